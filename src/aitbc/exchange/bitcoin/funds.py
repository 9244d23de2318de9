"""BTC in and out: per-user deposit addresses, the watcher (credit after N confirmations, reverse on a
reorg), and withdrawals (PSBT over the exchange's own outputs; a hot key under a limit, else the
operator signs).

The watcher keeps the hashes of the last ``reorg_depth`` blocks it scanned. Each poll it walks back from
its top until the backend agrees (the fork point); everything above is rolled back — deposits found
there are reversed if they were credited (``ReverseDeposit``: see ``aitbc.market.trading`` for what
happens to trades they funded), outputs found there are forgotten, spends found there are undone — and
then the new blocks are scanned. Every ledger change goes through the service's command log, with the
deposit / withdrawal row it implies in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aitbc.exchange.accounts import Principal
from aitbc.exchange.bitcoin.addresses import CHANGE, RECEIVE, AccountKey, check_address
from aitbc.exchange.bitcoin.backend import BitcoinBackend, Block, CoreRpcBackend, EsploraBackend
from aitbc.exchange.bitcoin.psbt import (
    Coin,
    build_withdrawal_psbt,
    finalize_signed,
    parse_psbt,
    read_hot_key,
    select_coins,
    sign_psbt,
    tx_hex,
)
from aitbc.exchange.config import ExchangeSettings
from aitbc.exchange.db import schema
from aitbc.exchange.service import ExchangeService
from aitbc.market.trading import CancelWithdrawal, CompleteWithdrawal, Deposit, RequestWithdrawal, ReverseDeposit
from aitbc.protocol.errors import AitbcError, ConfigError, Forbidden, NotFound

log = logging.getLogger("aitbc.exchange.bitcoin")
ASSET = "BTC"


def _now() -> int:
    return int(time.time() * 1000)


def open_backend(settings: ExchangeSettings) -> BitcoinBackend:
    b = settings.bitcoin
    if b.backend == "core":
        if not b.rpc_url:
            raise ConfigError("bitcoin.backend=core needs bitcoin.rpc_url")
        return CoreRpcBackend(b.rpc_url)
    if not b.esplora_url:
        raise ConfigError("bitcoin.backend=esplora needs bitcoin.esplora_url")
    return EsploraBackend(b.esplora_url)


class BitcoinFunds:
    def __init__(self, service: ExchangeService, backend: BitcoinBackend) -> None:
        settings = service.settings
        assert settings.bitcoin.xpub is not None
        self.service = service
        self.store = service.store
        self.cfg = settings.bitcoin
        self.network = settings.bitcoin.network
        self.account = AccountKey.parse(settings.bitcoin.xpub, self.network)
        self.backend = backend
        self.hot_key = read_hot_key(Path(self.cfg.hot_key_file).read_text()) if self.cfg.hot_key_file else None
        self.scripts: dict[bytes, tuple[int, int, int]] = {}
        """scriptPubKey -> (user id or 0 for change, chain, index) of every exchange address."""
        for row in self.store.fetch_all(
            sa.select(schema.deposit_addresses).where(schema.deposit_addresses.c.asset == ASSET)
        ):
            chain = CHANGE if row.user_id == 0 else RECEIVE
            self.scripts[self.account.derive_script(chain, row.derivation_index).data] = (
                row.user_id,
                chain,
                row.derivation_index,
            )
        self.chain: list[list[Any]] = self.store.get_state("btc_chain") or []
        """[[height, hash], …] of the last scanned blocks, oldest first."""
        self.tip = self.chain[-1][0] if self.chain else -1
        self.last_error: str | None = None
        self._poll_lock = asyncio.Lock()
        self._withdraw_lock = asyncio.Lock()

    def status(self) -> dict[str, Any]:
        return {
            "network": self.network.value,
            "scanned_height": self.tip,
            "error": self.last_error,
            "confirmations": self.cfg.confirmations,
        }

    # -- addresses ------------------------------------------------------------------------------
    def deposit_address(self, user_id: int) -> str:
        """The user's BIP84 receive address ``…/0/user_id`` (the same one every time)."""
        address = self.account.derive_address(RECEIVE, user_id)
        spk = self.account.derive_script(RECEIVE, user_id).data
        if spk not in self.scripts:
            with contextlib.suppress(sa.exc.IntegrityError):
                self.store.execute(
                    schema.deposit_addresses.insert(),
                    {
                        "address": address,
                        "asset": ASSET,
                        "user_id": user_id,
                        "derivation_index": user_id,
                        "created_at_ms": _now(),
                    },
                )
            self.scripts[spk] = (user_id, RECEIVE, user_id)
        return address

    def _change_address(self) -> tuple[int, bytes, dict[str, Any]]:
        index = int(self.store.get_state("btc_change_index") or 0)
        self.store.set_state("btc_change_index", index + 1)
        spk = self.account.derive_script(CHANGE, index).data
        self.scripts[spk] = (0, CHANGE, index)
        row = {
            "address": self.account.derive_address(CHANGE, index),
            "asset": ASSET,
            "user_id": 0,
            "derivation_index": index,
            "created_at_ms": _now(),
        }
        return index, spk, row

    # -- the watcher ------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.poll()
                self.last_error = None
            except AitbcError as exc:
                self.last_error = exc.message
                log.warning("bitcoin watcher: %s", exc.message)
            except Exception as exc:
                self.last_error = str(exc)
                log.exception("bitcoin watcher failed")
            await asyncio.sleep(self.cfg.poll_seconds)

    async def poll(self) -> None:
        """One round: follow reorgs, scan new blocks, credit deposits and complete withdrawals with N confs."""
        async with self._poll_lock:
            await self._poll()

    async def _poll(self) -> None:
        backend = self.backend
        tip = await asyncio.to_thread(backend.get_tip_height)
        self.service.metrics.chain_height.labels("bitcoin").set(tip)
        if not self.chain:  # first start: scan from the configured tip (older deposits are not looked for)
            start = tip
            self.chain = [[start - 1, await asyncio.to_thread(backend.get_block_hash, start - 1)]] if start > 0 else []
        # find the fork point: the highest block we scanned that the backend still has
        while self.chain:
            height, block_hash = self.chain[-1]
            if height <= tip and await asyncio.to_thread(backend.get_block_hash, height) == block_hash:
                break
            self.chain.pop()
        if not self.chain:
            raise AitbcError("reorg deeper than bitcoin.reorg_depth; operator attention needed", reason="deep_reorg")
        fork = self.chain[-1][0]
        if fork < self.tip:
            log.warning("bitcoin reorg", extra={"fork_height": fork, "old_tip": self.tip})
            await self._roll_back(fork)
        self.tip = fork
        for height in range(fork + 1, tip + 1):
            block_hash = await asyncio.to_thread(backend.get_block_hash, height)
            block = await asyncio.to_thread(backend.get_block, block_hash)
            if block.prev_hash != self.chain[-1][1]:
                return  # the chain moved under us: next round handles the reorg
            await asyncio.to_thread(self._scan_block, height, block)
        self.tip = tip
        await self._credit_and_complete()

    async def _roll_back(self, fork: int) -> None:
        d, u = schema.deposits.c, schema.btc_utxos.c
        rows = self.store.fetch_all(
            sa.select(schema.deposits).where(d.asset == ASSET, d.height > fork, d.status.in_(("seen", "credited")))
        )
        for row in rows:
            status = "reversed" if row.status == "credited" else "orphaned"
            mark = (schema.deposits.update().where(d.ref == row.ref), {"status": status, "updated_at_ms": _now()})
            if row.status == "credited":
                await self.service.submit(ReverseDeposit(str(row.user_id), ASSET, row.amount, row.ref), extra=[mark])
                self.service.metrics.reversals.labels(ASSET).inc()
            else:
                self.store.execute(*mark)
        with self.store.engine.begin() as conn:
            conn.execute(schema.btc_utxos.delete().where(u.height > fork))
            conn.execute(schema.btc_utxos.update().where(u.spent_height > fork).values(spent_height=None))
            self._save_chain(conn)

    def _scan_block(self, height: int, block: Block) -> None:
        """Outputs to our addresses (deposits, change), spends of our outputs, the chain state: one transaction."""
        u, d = schema.btc_utxos.c, schema.deposits.c
        now = _now()
        self.chain.append([height, block.hash])
        del self.chain[: max(0, len(self.chain) - self.cfg.reorg_depth)]
        with self.store.engine.begin() as conn:
            for tx in block.txs:
                txid = tx.txid().hex()
                for vin in tx.vin:
                    conn.execute(
                        schema.btc_utxos.update()
                        .where(u.txid == vin.txid.hex(), u.vout == vin.vout)
                        .values(spent_by=txid, spent_height=height)
                    )
                for n, out in enumerate(tx.vout):
                    owner = self.scripts.get(out.script_pubkey.data)
                    if owner is None:
                        continue
                    user_id, _, _ = owner
                    address = out.script_pubkey.address(self.account_network)
                    conn.execute(schema.btc_utxos.delete().where(u.txid == txid, u.vout == n))
                    conn.execute(
                        schema.btc_utxos.insert().values(
                            txid=txid, vout=n, address=address, value=out.value, height=height, block_hash=block.hash
                        )
                    )
                    if user_id == 0:
                        continue  # our change, not a deposit
                    ref = f"{txid}:{n}"
                    exists = conn.execute(sa.select(d.status).where(d.ref == ref)).first()
                    values = {
                        "asset": ASSET,
                        "user_id": user_id,
                        "address": address,
                        "amount": out.value,
                        "txid": txid,
                        "block_hash": block.hash,
                        "height": height,
                        "status": "seen",
                        "updated_at_ms": now,
                    }
                    if exists is None:
                        conn.execute(schema.deposits.insert().values(ref=ref, seen_at_ms=now, **values))
                    elif exists.status in ("reversed", "orphaned"):
                        conn.execute(schema.deposits.update().where(d.ref == ref).values(**values))
            self._save_chain(conn)

    @property
    def account_network(self) -> Any:
        from aitbc.exchange.bitcoin.addresses import network_params

        return network_params(self.network)

    def _save_chain(self, conn: sa.Connection) -> None:
        kv = schema.settings_kv
        conn.execute(kv.delete().where(kv.c.key == "btc_chain"))
        conn.execute(kv.insert().values(key="btc_chain", value=self.chain))

    async def _credit_and_complete(self) -> None:
        d, w, u = schema.deposits.c, schema.withdrawals.c, schema.btc_utxos.c
        deepest = self.tip - self.cfg.confirmations + 1
        ready = self.store.fetch_all(
            sa.select(schema.deposits).where(d.asset == ASSET, d.status == "seen", d.height <= deepest)
        )
        for row in ready:
            mark = (schema.deposits.update().where(d.ref == row.ref), {"status": "credited", "updated_at_ms": _now()})
            try:
                await self.service.submit(Deposit(str(row.user_id), ASSET, row.amount, row.ref), extra=[mark])
                self.service.metrics.deposits.labels(ASSET).inc()
            except AitbcError as exc:
                log.error("deposit %s not credited: %s", row.ref, exc.message)
        sent = self.store.fetch_all(
            sa.select(schema.withdrawals.c.ref, schema.withdrawals.c.txid).where(
                w.asset == ASSET, w.status == "broadcast"
            )
        )
        for ref, txid in sent:
            spent = self.store.fetch_one(sa.select(sa.func.max(u.spent_height)).where(u.spent_by == txid))
            if spent is not None and spent[0] is not None and spent[0] <= deepest:
                mark = (
                    schema.withdrawals.update().where(w.ref == ref),
                    {"status": "confirmed", "updated_at_ms": _now()},
                )
                await self.service.submit(CompleteWithdrawal(ref), extra=[mark])

    # -- withdrawals ---------------------------------------------------------------------------------
    async def request_withdrawal(self, p: Principal, address: str, amount: int) -> dict[str, Any]:
        # one at a time: two withdrawals must never pick the same coin before either reserves it
        async with self._withdraw_lock:
            return await self._request_withdrawal(p, address, amount)

    async def _request_withdrawal(self, p: Principal, address: str, amount: int) -> dict[str, Any]:
        recipient = check_address(address, self.network)
        if type(amount) is not int or amount < self.cfg.min_withdrawal_sat:
            raise AitbcError(
                f"a BTC withdrawal is at least {self.cfg.min_withdrawal_sat} sat", reason="amount_too_small"
            )
        fee_rate = await asyncio.to_thread(self.backend.estimate_fee_rate, 6)
        if fee_rate > self.cfg.max_fee_rate_sat_vb:  # a lying or panicking backend does not set users' fees
            raise AitbcError(
                f"the network fee estimate ({fee_rate} sat/vB) is above the exchange's cap "
                f"({self.cfg.max_fee_rate_sat_vb}); try later",
                reason="fee_too_high",
            )
        u = schema.btc_utxos.c
        deepest = self.tip - self.cfg.confirmations + 1
        rows = self.store.fetch_all(
            sa.select(schema.btc_utxos).where(u.spent_by.is_(None), u.reserved_by.is_(None), u.height <= deepest)
        )
        coins = []
        for r in rows:
            owner = self.scripts.get(self.account.derive_script(*self._origin(r.address)).data)
            assert owner is not None
            coins.append(Coin(r.txid, r.vout, r.value, owner[1], owner[2]))
        chosen, fee, change = select_coins(coins, amount, fee_rate)
        change_index, _, change_row = self._change_address() if change else (0, b"", None)
        psbt = build_withdrawal_psbt(self.account, chosen, recipient, amount, change, change_index)
        ref = "wd_" + secrets.token_hex(8)
        now = _now()
        extra: list[tuple[Any, dict[str, Any]]] = [
            (
                schema.withdrawals.insert(),
                {
                    "ref": ref,
                    "asset": ASSET,
                    "user_id": p.user_id,
                    "address": address,
                    "amount": amount,
                    "fee": fee,
                    "status": "awaiting_signature",
                    "psbt": psbt.to_string(),
                    "txid": psbt.tx.txid().hex(),
                    "created_at_ms": now,
                    "updated_at_ms": now,
                },
            ),
        ]
        for c in chosen:
            extra.append((schema.btc_utxos.update().where(u.txid == c.txid, u.vout == c.vout), {"reserved_by": ref}))
        if change_row is not None:
            extra.append((schema.deposit_addresses.insert(), change_row))
        await self.service.submit(RequestWithdrawal(ref, p.engine_user, ASSET, amount + fee), extra=extra)
        self.service.accounts.audit(
            p.user_id, "withdrawal_requested", ref=ref, asset=ASSET, amount=amount, fee=fee, address=address
        )
        status = "awaiting_signature"
        if self.hot_key is not None and amount <= self.cfg.hot_limit_sat:
            sign_psbt(psbt, self.hot_key)
            status = await self._broadcast(ref, psbt)
        return {
            "ref": ref,
            "asset": ASSET,
            "address": address,
            "amount": amount,
            "fee": fee,
            "fee_rate_sat_vb": fee_rate,
            "status": status,
            "txid": psbt.tx.txid().hex(),
        }

    def _origin(self, address: str) -> tuple[int, int]:
        row = self.store.fetch_one(
            sa.select(schema.deposit_addresses.c.user_id, schema.deposit_addresses.c.derivation_index).where(
                schema.deposit_addresses.c.address == address
            )
        )
        assert row is not None
        return (CHANGE if row.user_id == 0 else RECEIVE), row.derivation_index

    async def submit_signed(self, ref: str, psbt_text: str) -> dict[str, Any]:
        w = schema.withdrawals.c
        row = self.store.fetch_one(sa.select(schema.withdrawals).where(w.ref == ref))
        if row is None or row.asset != ASSET:
            raise NotFound(f"no BTC withdrawal {ref}")
        if row.status != "awaiting_signature":
            raise Forbidden(f"withdrawal {ref} is {row.status}", reason="bad_state")
        signed = parse_psbt(psbt_text)
        return {"ref": ref, "status": await self._broadcast(ref, signed, expected_txid=row.txid), "txid": row.txid}

    async def cancel_withdrawal(self, ref: str) -> dict[str, Any]:
        """Release an unsigned withdrawal: the user's hold (``CancelWithdrawal``) and its reserved coins, at once."""
        w, u = schema.withdrawals.c, schema.btc_utxos.c
        row = self.store.fetch_one(sa.select(schema.withdrawals).where(w.ref == ref))
        if row is None or row.asset != ASSET:
            raise NotFound(f"no BTC withdrawal {ref}")
        if row.status != "awaiting_signature":
            raise Forbidden(
                f"withdrawal {ref} is {row.status}: only one awaiting its signature can be cancelled",
                reason="bad_state",
            )
        now = _now()
        await self.service.submit(
            CancelWithdrawal(ref),
            extra=[
                (schema.withdrawals.update().where(w.ref == ref), {"status": "cancelled", "updated_at_ms": now}),
                (schema.btc_utxos.update().where(u.reserved_by == ref), {"reserved_by": None}),
            ],
        )
        return {"ref": ref, "status": "cancelled"}

    async def _broadcast(self, ref: str, psbt: Any, expected_txid: str | None = None) -> str:
        tx = finalize_signed(psbt, expected_txid or psbt.tx.txid().hex())
        await asyncio.to_thread(self.backend.broadcast, tx_hex(tx))
        w = schema.withdrawals.c
        self.store.execute(
            schema.withdrawals.update().where(w.ref == ref), {"status": "broadcast", "updated_at_ms": _now()}
        )
        return "broadcast"
