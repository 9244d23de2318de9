"""``NodeClient``: the chain node's JSON-RPC, plus light verification of what it returns."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec

from aitbc.chain.audit_types import AuditState
from aitbc.chain.entries import (
    Account,
    Deposit,
    Escrow,
    PaidJob,
    is_valid_account_proof,
    is_valid_audits_proof,
    is_valid_deposit_proof,
    is_valid_escrow_proof,
    is_valid_governance_proof,
    is_valid_paid_proof,
)
from aitbc.chain.gov_types import GovernanceState
from aitbc.chain.smt import SmtProof
from aitbc.client.http import RestClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, RemoteError
from aitbc.protocol.tx import Tx, sign_tx, tx_to_json_obj


class NodeClient(RestClient):
    """JSON-RPC over the shared REST client (``aitbc.client.http``): one call, or a batch, per POST."""

    service = "node"

    def __init__(self, rpc_url: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(rpc_url, {}, timeout, transport)
        self.rpc_url = self.base_url + "/"
        self._ids = itertools.count(1)

    def _post(self, payload: Any) -> Any:
        response = self._send("POST", "/", json=payload)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise RemoteError(
                f"node answered HTTP {response.status_code} without JSON", code=response.status_code
            ) from None

    @staticmethod
    def _unwrap(reply: dict[str, Any]) -> Any:
        error = reply.get("error")
        if error is not None:
            data = error.get("data")
            reason = data.get("reason") if isinstance(data, dict) else None
            raise RemoteError(error.get("message", "error"), code=error.get("code"), reason=reason, data=data)
        return reply.get("result")

    def call(self, method: str, *params: Any) -> Any:
        reply = self._post({"jsonrpc": "2.0", "method": method, "params": list(params), "id": next(self._ids)})
        return self._unwrap(reply)

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any | RemoteError]:
        """Send calls in one request; each result is a value or the ``RemoteError`` for that call."""
        ids = [next(self._ids) for _ in calls]
        replies = self._post(
            [{"jsonrpc": "2.0", "method": m, "params": p, "id": i} for (m, p), i in zip(calls, ids, strict=True)]
        )
        if isinstance(replies, dict):  # the whole batch was refused
            self._unwrap(replies)
        by_id = {r.get("id"): r for r in replies}
        out: list[Any | RemoteError] = []
        for i in ids:
            try:
                out.append(self._unwrap(by_id[i]))
            except RemoteError as exc:
                out.append(exc)
        return out

    # -- typed helpers ----------------------------------------------------
    def get_head(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("get_head")
        return result

    def get_chain_info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("get_chain_info")
        return result

    def get_block(self, ref: int | str, include_txs: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self.call("get_block", ref, include_txs)
        return result

    def get_validators(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("get_validators")
        return result

    def get_account(self, address: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("get_account", address)
        return result

    def get_tx_status(self, tx_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("get_tx_status", tx_hash)
        return result

    def send_tx(self, tx: Tx) -> str:
        result = self.call("send_tx", tx_to_json_obj(tx))
        return str(result["tx_hash"])

    def sign_and_send(self, key: KeyPair, tx: Tx) -> str:
        return self.send_tx(sign_tx(tx, key))

    def next_nonce(self, address: str) -> int:
        return int(self.get_account(address)["pending_nonce"])

    def wait_for_tx(self, tx_hash: str, timeout: float = 30.0, poll: float = 0.1) -> dict[str, Any]:
        """Poll until the tx is committed or rejected; raise ``RemoteError`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_tx_status(tx_hash)
            if status["status"] in ("committed", "rejected"):
                return status
            if time.monotonic() > deadline:
                raise RemoteError(f"tx {tx_hash} not committed after {timeout:.0f}s", reason="timeout")
            time.sleep(poll)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job's escrow on chain with its events, or None when it has none."""
        try:
            result: dict[str, Any] = self.call("get_job", job_id)
        except RemoteError as exc:
            if exc.code == -32004:
                return None
            raise
        return result

    def get_job_events(self, after_seq: int = 0, address: str | None = None, limit: int = 1_000) -> dict[str, Any]:
        """A page of on-chain job events after ``after_seq`` (optionally only those naming ``address``)."""
        result: dict[str, Any] = self.call("get_job_events", after_seq, address, limit)
        return result

    def iter_job_events(self, address: str | None = None, after_seq: int = 0) -> Iterator[dict[str, Any]]:
        """Every job event after ``after_seq`` up to the head, page by page."""
        while True:
            page = self.get_job_events(after_seq, address)
            yield from page["events"]
            if not page["events"]:
                return
            after_seq = int(page["next_seq"])

    def get_verified_escrow(self, job_id: str) -> tuple[Escrow | None, dict[str, Any]]:
        """Fetch a job's escrow with its Merkle proof and check it against the header it names."""
        payload: dict[str, Any] = self.call("get_job_proof", job_id)
        header = self.get_block(payload["height"], False)
        if header["state_root"] != payload["state_root"]:
            raise AitbcError("proof's state root differs from the block header's", reason="bad_proof")
        escrow = None if payload["escrow"] is None else msgspec.convert(payload["escrow"], Escrow)
        if not is_valid_escrow_proof(payload["state_root"], job_id, escrow, proof_from_json(payload["proof"])):
            raise AitbcError("escrow proof does not verify against the state root", reason="bad_proof")
        return escrow, payload

    def get_verified_deposit(self, deposit_id: str) -> tuple[Deposit | None, dict[str, Any]]:
        """A deposit (None if there is none) checked by its Merkle proof against the header it names."""
        try:
            payload: dict[str, Any] = self.call("get_deposit", deposit_id)
        except RemoteError as exc:
            if exc.code == -32004:
                return None, {}
            raise
        header = self.get_block(payload["height"], False)
        if header["state_root"] != payload["state_root"]:
            raise AitbcError("proof's state root differs from the block header's", reason="bad_proof")
        deposit = msgspec.convert(payload["deposit"], Deposit)
        if not is_valid_deposit_proof(payload["state_root"], deposit_id, deposit, proof_from_json(payload["proof"])):
            raise AitbcError("deposit proof does not verify against the state root", reason="bad_proof")
        return deposit, payload

    def get_verified_paid_job(self, job_id: str) -> tuple[PaidJob | None, dict[str, Any]]:
        """A deposit job's payment record (None: never paid, or forgotten after its expiry), proof checked."""
        payload: dict[str, Any] = self.call("get_paid_job", job_id)
        header = self.get_block(payload["height"], False)
        if header["state_root"] != payload["state_root"]:
            raise AitbcError("proof's state root differs from the block header's", reason="bad_proof")
        paid = None if payload["paid"] is None else msgspec.convert(payload["paid"], PaidJob)
        if not is_valid_paid_proof(payload["state_root"], job_id, paid, proof_from_json(payload["proof"])):
            raise AitbcError("paid-job proof does not verify against the state root", reason="bad_proof")
        return paid, payload

    def get_verified_account(self, address: str) -> tuple[Account | None, dict[str, Any]]:
        """Fetch an account with its Merkle proof and check the proof against the block header it names."""
        payload: dict[str, Any] = self.call("get_account_proof", address)
        header = self.get_block(payload["height"], False)
        if header["state_root"] != payload["state_root"]:
            raise AitbcError("proof's state root differs from the block header's", reason="bad_proof")
        account = None if payload["account"] is None else msgspec.convert(payload["account"], Account)
        if not is_valid_account_proof(payload["state_root"], address, account, proof_from_json(payload["proof"])):
            raise AitbcError("account proof does not verify against the state root", reason="bad_proof")
        return account, payload

    def get_verified_governance(self) -> tuple[GovernanceState, dict[str, Any]]:
        """The whole governance state (proposals, votes, tallies, live params), checked by its Merkle proof
        against the header it names: what ``aitbc gov`` shows is what the chain holds."""
        payload: dict[str, Any] = self.call("get_governance_proof")
        header = self.get_block(payload["height"], False)
        if header["state_root"] != payload["state_root"]:
            raise AitbcError("proof's state root differs from the block header's", reason="bad_proof")
        governance = msgspec.convert(payload["governance"], GovernanceState)
        if not is_valid_governance_proof(payload["state_root"], governance, proof_from_json(payload["proof"])):
            raise AitbcError("governance proof does not verify against the state root", reason="bad_proof")
        return governance, payload

    def get_verified_audits(self) -> tuple[AuditState, dict[str, Any]]:
        """The whole audit state (miner bonds, audits, disputes), checked by its Merkle proof against the
        header it names."""
        payload: dict[str, Any] = self.call("get_audit_proof")
        header = self.get_block(payload["height"], False)
        if header["state_root"] != payload["state_root"]:
            raise AitbcError("proof's state root differs from the block header's", reason="bad_proof")
        audits = msgspec.convert(payload["audits"], AuditState)
        if not is_valid_audits_proof(payload["state_root"], audits, proof_from_json(payload["proof"])):
            raise AitbcError("audit proof does not verify against the state root", reason="bad_proof")
        return audits, payload


def proof_from_json(proof: dict[str, Any]) -> SmtProof:
    return SmtProof(
        siblings=tuple(bytes.fromhex(s) for s in proof["siblings"]),
        leaf_key=None if proof["leaf_key"] is None else bytes.fromhex(proof["leaf_key"]),
        leaf_value_hash=None if proof["leaf_value_hash"] is None else bytes.fromhex(proof["leaf_value_hash"]),
    )
