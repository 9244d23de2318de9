"""The daemon's state: which keys are unlocked (in memory only, until lock, timeout or shutdown),
failed-unlock limits, and the operations REST and JSON-RPC share.

Why unlocked keys are ``bytearray``s signed through libsodium directly: the secret then lives
in one buffer we own and can zero on lock; ``KeyPair`` keeps an immutable ``bytes`` that
Python may copy and never clears. (Best effort: the passphrase and the seed pass through
short-lived Python objects while unlocking.)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nacl._sodium import ffi, lib

from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.protocol.address import decode_address
from aitbc.protocol.crypto import SIGNATURE_LEN, KeyPair, SigningKind, signing_domain
from aitbc.protocol.errors import AitbcError, ConfigError, Conflict, InvalidAddress, InvalidTx, RateLimited, TxRejection
from aitbc.protocol.tx import Transfer, Tx, tx_from_json_obj, tx_hash, tx_signing_bytes, tx_to_json_obj
from aitbc.wallet import multisig
from aitbc.wallet.config import WalletSettings
from aitbc.wallet.keystore import mnemonic_to_seed
from aitbc.wallet.metrics import WalletMetrics
from aitbc.wallet.receipts import ReceiptReport, verify_receipt_end_to_end
from aitbc.wallet.store import KdfCost, WalletStore, check_wallet_name


class WalletLocked(Conflict):
    reason = "wallet_locked"


class UnlockedKey:
    """An unlocked Ed25519 secret in a buffer that ``wipe`` zeroes."""

    __slots__ = ("_secret", "address", "expires_at", "name")

    def __init__(self, name: str, key: KeyPair, expires_at: float) -> None:
        self.name = name
        self.address = key.address
        self.expires_at = expires_at
        self._secret = bytearray(key._secret)

    def sign(self, chain_id: str, kind: SigningKind, message: bytes) -> bytes:
        if not any(self._secret):
            raise WalletLocked(f"wallet {self.name!r} is locked")
        data = signing_domain(chain_id, kind) + message
        signed = ffi.new("unsigned char[]", len(data) + SIGNATURE_LEN)
        signed_len = ffi.new("unsigned long long *")
        rc = lib.crypto_sign(signed, signed_len, data, len(data), ffi.from_buffer(self._secret))
        if rc != 0:  # pragma: no cover - libsodium never fails to sign
            raise AitbcError("signing failed")
        return bytes(ffi.buffer(signed, SIGNATURE_LEN))

    def sign_tx(self, tx: Tx) -> Tx:
        signature = self.sign(tx.chain_id, SigningKind.TX, tx_signing_bytes(tx))
        return msgspec.structs.replace(tx, signature=signature.hex())

    def wipe(self) -> None:
        for i in range(len(self._secret)):
            self._secret[i] = 0


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)


class WalletService:
    def __init__(
        self,
        settings: WalletSettings,
        metrics: WalletMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = WalletStore(
            settings.wallet_dir,
            KdfCost(settings.kdf_memlimit_kib, settings.kdf_opslimit, settings.allow_weak_kdf),
        )
        self.metrics = metrics or WalletMetrics()
        self.clock = clock
        self._unlocked: dict[str, UnlockedKey] = {}
        self._failures: dict[str, _Failures] = {}
        self._kdf = asyncio.Semaphore(1)  # one Argon2id at a time: guessing in parallel buys nothing
        self._send_locks: dict[str, asyncio.Lock] = {}
        self._chain_id: str | None = None

    # -- keys ------------------------------------------------------------
    def list_wallets(self) -> list[dict[str, Any]]:
        self.expire()
        out: list[dict[str, Any]] = []
        for item in self.store.list_wallets():
            if isinstance(item, AitbcError):
                out.append({"error": item.to_dict()})
                continue
            key = self._unlocked.get(item.name)
            out.append(
                {
                    "name": item.name,
                    "address": item.address,
                    "unlocked": key is not None,
                    "unlock_expires_in_s": None if key is None else round(key.expires_at - self.clock(), 1),
                }
            )
        return out

    async def create(self, name: str, passphrase: str, mnemonic: str | None = None) -> dict[str, Any]:
        check_wallet_name(name)
        seed = mnemonic_to_seed(mnemonic) if mnemonic else None
        async with self._kdf:
            info = await asyncio.to_thread(self.store.create, name, passphrase, seed)
        self.metrics.wallets_created.inc()
        return {"name": info.name, "address": info.address}

    def _check_rate(self, name: str) -> None:
        now = self.clock()
        failures = self._failures.get(name)
        if failures is None:
            return
        window = self.settings.failed_unlock_window_s
        while failures.times and failures.times[0] <= now - window:
            failures.times.popleft()
        if len(failures.times) >= self.settings.max_failed_unlocks:
            retry_after = failures.times[0] + window - now
            self.metrics.unlocks.labels("rate_limited").inc()
            raise RateLimited(f"too many failed unlock attempts for {name!r}; retry in {retry_after:.0f}s", retry_after)

    async def unlock(self, name: str, passphrase: str, timeout_s: float | None = None) -> dict[str, Any]:
        check_wallet_name(name)
        timeout = self.settings.unlock_timeout_s if timeout_s is None else timeout_s
        if not 0 < timeout <= self.settings.max_unlock_timeout_s:
            raise ConfigError(
                f"timeout must be in (0, {self.settings.max_unlock_timeout_s:.0f}] seconds", reason="invalid_params"
            )
        self._check_rate(name)
        async with self._kdf:
            self._check_rate(name)  # others may have failed while we waited
            try:
                key = await asyncio.to_thread(self.store.unlock, name, passphrase)
            except AitbcError as exc:
                if exc.reason == "wrong_passphrase":
                    self._failures.setdefault(name, _Failures()).times.append(self.clock())
                    self.metrics.unlocks.labels("wrong_passphrase").inc()
                raise
        self._failures.pop(name, None)
        old = self._unlocked.pop(name, None)
        if old is not None:
            old.wipe()
        unlocked = UnlockedKey(name, key, self.clock() + timeout)
        self._unlocked[name] = unlocked
        self.metrics.unlocks.labels("ok").inc()
        self.metrics.unlocked.set(len(self._unlocked))
        return {"name": name, "address": unlocked.address, "unlocked": True, "expires_in_s": timeout}

    def lock(self, name: str | None = None) -> list[str]:
        """Wipe one unlocked key (or all); the names that were unlocked."""
        names = list(self._unlocked) if name is None else [name] if name in self._unlocked else []
        for n in names:
            self._unlocked.pop(n).wipe()
        self.metrics.unlocked.set(len(self._unlocked))
        return names

    def expire(self) -> list[str]:
        """Wipe keys whose unlock timeout has passed (called by a timer and on every access)."""
        now = self.clock()
        expired = [n for n, k in self._unlocked.items() if k.expires_at <= now]
        for n in expired:
            self._unlocked.pop(n).wipe()
        if expired:
            self.metrics.unlocked.set(len(self._unlocked))
        return expired

    def unlocked_count(self) -> int:
        self.expire()
        return len(self._unlocked)

    def key(self, name: str) -> UnlockedKey:
        self.expire()
        key = self._unlocked.get(name)
        if key is None:
            check_wallet_name(name)
            if not self.store.exists(name):
                self.store.read(name)  # raises NotFound
            raise WalletLocked(f"wallet {name!r} is locked; unlock it first")
        return key

    # -- chain -----------------------------------------------------------
    def node(self) -> NodeClient:
        if not self.settings.rpc_url:
            raise ConfigError("the wallet daemon has no node configured (start it with --rpc URL)", reason="no_node")
        return NodeClient(self.settings.rpc_url, timeout=15.0)

    async def _node_call(self, fn: Callable[[NodeClient], Any]) -> Any:
        def run() -> Any:
            with self.node() as node:
                return fn(node)

        return await asyncio.to_thread(run)

    async def chain_id(self) -> str:
        if self._chain_id is None:
            info = await self._node_call(lambda n: n.get_chain_info())
            self._chain_id = str(info["chain_id"])
        return self._chain_id

    async def balance(self, name: str) -> dict[str, Any]:
        address = self.store.read(check_wallet_name(name)).address
        account = await self._node_call(lambda n: n.get_account(address))
        return {"name": name, **account}

    async def sign_tx(self, name: str, tx_obj: Any) -> dict[str, Any]:
        """Sign a tx (JSON object) as this wallet: its sender, or a member of the multisig account it spends."""
        key = self.key(name)
        tx = tx_from_json_obj(tx_obj)
        if isinstance(tx, multisig.MULTISIG_SPEND_TYPES):
            signed_ms = multisig.add_member_signature(tx, key.address, key.sign)
            self.metrics.signatures.inc()
            return {"tx": tx_to_json_obj(signed_ms), "tx_hash": tx_hash(signed_ms)}
        if tx.sender != key.address:
            raise InvalidTx(TxRejection.BAD_SIGNATURE, f"tx sender {tx.sender} is not wallet {name!r} ({key.address})")
        signed = key.sign_tx(tx)
        self.metrics.signatures.inc()
        return {"tx": tx_to_json_obj(signed), "tx_hash": tx_hash(signed)}

    async def send(
        self, name: str, to: str, amount: int, fee: int, memo: str = "", wait: bool = False
    ) -> dict[str, Any]:
        """Build, sign and submit a transfer from this wallet (nonce from the node, one send at a time)."""
        key = self.key(name)
        try:
            decode_address(to)
        except InvalidAddress as exc:
            raise ConfigError(f"to: {exc.message}", reason="invalid_address") from None
        chain_id = await self.chain_id()
        lock = self._send_locks.setdefault(name, asyncio.Lock())
        async with lock:
            nonce = await self._node_call(lambda n: n.next_nonce(key.address))
            try:
                tx = Transfer(
                    chain_id=chain_id, sender=key.address, nonce=nonce, fee=fee, recipient=to, amount=amount, memo=memo
                )
            except (msgspec.ValidationError, ValueError) as exc:
                raise InvalidTx(TxRejection.MALFORMED, str(exc)) from None
            signed = key.sign_tx(tx)
            self.metrics.signatures.inc()
            sent_hash = await self._node_call(lambda n: n.send_tx(signed))
        self.metrics.sends.inc()
        result: dict[str, Any] = {"tx_hash": sent_hash, "nonce": nonce, "status": "pending"}
        if wait:
            status = await self._node_call(lambda n: n.wait_for_tx(sent_hash))
            result.update(status)
        return result

    async def verify_receipt(self, job_id: str | None = None, receipt: Any = None) -> ReceiptReport:
        settings = self.settings

        def run() -> ReceiptReport:
            coordinator = (
                CoordinatorClient(settings.coordinator_url, settings.coordinator_api_key)
                if settings.coordinator_url
                else None
            )
            try:
                with self.node() as node:
                    return verify_receipt_end_to_end(node, coordinator, job_id=job_id, receipt_obj=receipt)
            finally:
                if coordinator is not None:
                    coordinator.close()

        return await asyncio.to_thread(run)
