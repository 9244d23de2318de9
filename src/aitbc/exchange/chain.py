"""AITBC in and out over the chain: deposits are transfers to the exchange's address carrying the user's
memo, credited once their block is committed — on a BFT network, once the node has the block's commit
certificate (+2/3 of the voting power precommitted it: final, no confirmations to wait for);
withdrawals are transfers signed with the exchange's key, completed when the node says committed.

The exchange key is a plain key file (``aitbc.runtime.keyfile``, like a node's key) and signs with the
protocol's one signing scheme; the memo carries a checksum so a mistyped memo is held for the operator
instead of crediting a stranger.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from typing import Any

import sqlalchemy as sa

from aitbc.client.node import NodeClient
from aitbc.exchange.accounts import Principal
from aitbc.exchange.db import schema
from aitbc.exchange.service import ExchangeService
from aitbc.market.trading import CancelWithdrawal, CompleteWithdrawal, Deposit, RequestWithdrawal
from aitbc.protocol.address import is_valid_address
from aitbc.protocol.amounts import MAX_AMOUNT
from aitbc.protocol.errors import AitbcError, ConfigError, InvalidAddress, RemoteError
from aitbc.protocol.tx import Transfer, sign_tx, tx_from_json_obj, tx_hash
from aitbc.runtime.keyfile import read_keyfile

log = logging.getLogger("aitbc.exchange.chain")
ASSET = "AITBC"
_MEMO = re.compile(r"^aitbcx-(\d{1,18})-([0-9a-f]{6})$")


def _now() -> int:
    return int(time.time() * 1000)


class AitbcFunds:
    def __init__(self, service: ExchangeService, client: NodeClient | None = None) -> None:
        cfg = service.settings.aitbc
        if not cfg.node_url or not cfg.key_file:
            raise ConfigError("AITBC deposits need aitbc.node_url and aitbc.key_file")
        self.service = service
        self.store = service.store
        self.cfg = cfg
        self.key = read_keyfile(cfg.key_file)
        self.address = self.key.address
        self.client = client or NodeClient(cfg.node_url)
        self.chain_id: str | None = None
        self.scanned = int(self.store.get_state("aitbc_height") or -1)
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    def status(self) -> dict[str, Any]:
        return {"address": self.address, "scanned_height": self.scanned, "error": self.last_error}

    def memo_for(self, user_id: int) -> str:
        check = hashlib.sha256(f"{self.address}:{user_id}".encode()).hexdigest()[:6]
        return f"aitbcx-{user_id}-{check}"

    def user_of(self, memo: str) -> int | None:
        match = _MEMO.match(memo.strip())
        if match is None:
            return None
        user_id = int(match.group(1))
        return user_id if self.memo_for(user_id) == memo.strip() else None

    # -- the watcher -----------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.poll()
                self.last_error = None
            except AitbcError as exc:
                self.last_error = exc.message
                log.warning("aitbc watcher: %s", exc.message)
            except Exception as exc:
                self.last_error = str(exc)
                log.exception("aitbc watcher failed")
            await asyncio.sleep(self.cfg.poll_seconds)

    async def poll(self) -> None:
        async with self._lock:
            await self._poll()

    async def _poll(self) -> None:
        head = await asyncio.to_thread(self.client.get_head)
        height = int(head["height"])
        self.service.metrics.chain_height.labels("aitbc").set(height)
        if self.scanned < 0:  # first start: from the current head on
            self.scanned = height - 1
        for h in range(self.scanned + 1, height + 1):
            block = await asyncio.to_thread(self.client.get_block, h, True)
            if "commit" in block and not block["commit"]:
                break  # a BFT node without the block's commit certificate yet: not final, next round
            await self._scan(h, block)
            self.scanned = h
            await asyncio.to_thread(self.store.set_state, "aitbc_height", h)
        await self._settle_withdrawals()

    async def _scan(self, height: int, block: dict[str, Any]) -> None:
        d = schema.deposits.c
        for obj in block.get("txs", []):
            if obj.get("type") != "transfer" or obj.get("recipient") != self.address:
                continue
            tx = tx_from_json_obj(obj)
            assert isinstance(tx, Transfer)
            ref = f"aitbc:{tx_hash(tx)}"
            if self.store.fetch_one(sa.select(d.ref).where(d.ref == ref)) is not None:
                continue
            user_id = self.user_of(tx.memo)
            now = _now()
            row = {
                "ref": ref,
                "asset": ASSET,
                "user_id": user_id or 0,
                "address": self.address,
                "amount": tx.amount,
                "txid": tx_hash(tx),
                "block_hash": block.get("hash"),
                "height": height,
                "seen_at_ms": now,
                "updated_at_ms": now,
            }
            if user_id is None or tx.amount <= 0:
                self.store.execute(schema.deposits.insert(), row | {"status": "unclaimed"})
                log.warning("AITBC deposit with an unknown memo held for the operator", extra={"ref": ref})
                continue
            await self.service.submit(
                Deposit(str(user_id), ASSET, tx.amount, ref),
                extra=[(schema.deposits.insert(), row | {"status": "credited"})],
            )
            self.service.metrics.deposits.labels(ASSET).inc()

    async def _settle_withdrawals(self) -> None:
        w = schema.withdrawals.c
        rows = self.store.fetch_all(
            sa.select(schema.withdrawals.c.ref, w.txid).where(w.asset == ASSET, w.status == "broadcast")
        )
        for ref, txid in rows:
            status = await asyncio.to_thread(self.client.get_tx_status, txid)
            if status["status"] == "committed":
                mark = (
                    schema.withdrawals.update().where(w.ref == ref),
                    {"status": "confirmed", "updated_at_ms": _now()},
                )
                await self.service.submit(CompleteWithdrawal(ref), extra=[mark])
            elif status["status"] in ("rejected", "unknown"):
                mark = (schema.withdrawals.update().where(w.ref == ref), {"status": "failed", "updated_at_ms": _now()})
                await self.service.submit(CancelWithdrawal(ref), extra=[mark])

    # -- withdrawals -------------------------------------------------------------------------------------
    async def request_withdrawal(self, p: Principal, address: str, amount: int) -> dict[str, Any]:
        if not is_valid_address(address):
            raise InvalidAddress("not an AITBC address (ait1…, bech32m)")
        if type(amount) is not int or not 0 < amount <= MAX_AMOUNT - self.cfg.withdrawal_fee:
            raise AitbcError("amount must be a positive number of base units", reason="non_positive_amount")
        fee = self.cfg.withdrawal_fee
        ref = "wd_" + secrets.token_hex(8)
        async with self._lock:  # one sender nonce at a time
            if self.chain_id is None:
                self.chain_id = str((await asyncio.to_thread(self.client.get_chain_info))["chain_id"])
            nonce = await asyncio.to_thread(self.client.next_nonce, self.address)
            tx = sign_tx(
                Transfer(
                    chain_id=self.chain_id,
                    sender=self.address,
                    nonce=nonce,
                    fee=fee,
                    recipient=address,
                    amount=amount,
                    memo=ref,
                ),
                self.key,
            )
            txid = tx_hash(tx)
            now = _now()
            row = {
                "ref": ref,
                "asset": ASSET,
                "user_id": p.user_id,
                "address": address,
                "amount": amount,
                "fee": fee,
                "status": "broadcast",
                "psbt": None,
                "txid": txid,
                "created_at_ms": now,
                "updated_at_ms": now,
            }
            # the hold and the row first (durable), then the transfer; a refused transfer releases the hold
            await self.service.submit(
                RequestWithdrawal(ref, p.engine_user, ASSET, amount + fee), extra=[(schema.withdrawals.insert(), row)]
            )
            try:
                await asyncio.to_thread(self.client.send_tx, tx)
            except RemoteError as exc:
                w = schema.withdrawals.c
                mark = (schema.withdrawals.update().where(w.ref == ref), {"status": "failed", "updated_at_ms": _now()})
                await self.service.submit(CancelWithdrawal(ref), extra=[mark])
                raise AitbcError(
                    f"the node refused the withdrawal: {exc.message}", reason="withdrawal_failed"
                ) from None
        self.service.accounts.audit(
            p.user_id, "withdrawal_requested", ref=ref, asset=ASSET, amount=amount, fee=fee, address=address
        )
        return {
            "ref": ref,
            "asset": ASSET,
            "address": address,
            "amount": amount,
            "fee": fee,
            "status": "broadcast",
            "txid": txid,
        }
