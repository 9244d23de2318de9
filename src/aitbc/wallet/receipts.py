"""End-to-end verification of a job receipt, as the client's wallet does it before trusting a result.

Each check is reported on its own (pass, fail or skip, with the reason), so a person sees
exactly what holds: the miner's signature, the coordinator's countersignature (its statement
that it assigned the job to that miner), the receipt's own arithmetic, that the settle is
committed on chain (the escrow and its anchored receipt hash, checked by a Merkle proof
against a block header whose proposer signature verifies), and that the amounts paid match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from aitbc.chain.entries import Escrow, EscrowState
from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.protocol.block import BlockHeader, block_hash, verify_header_signature
from aitbc.protocol.deposit import get_job_expiry
from aitbc.protocol.errors import AitbcError, InvalidSignature
from aitbc.protocol.receipt import (
    InvalidReceipt,
    Receipt,
    compute_receipt_hash,
    verify_coordinator_signature,
    verify_miner_signature,
    verify_receipt_accounting,
)
from aitbc.protocol.tx import SettleJob, SettleJobZk, tx_from_json_obj
from aitbc.protocol.zk import RECEIPT_VK_SHA256, ZkReceiptProof, get_receipt_proof_problem
from aitbc.protocol.zkml import (
    ZKML_SCALE,
    compute_float_of_felt,
    compute_zk_inference_output_hash,
    get_instances,
    get_zk_inference_problem,
)
from aitbc.protocol.zkml_input import ZKML_INPUTS, ZKML_MODEL

Outcome = Literal["pass", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    outcome: Outcome
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "outcome": self.outcome, "detail": self.detail}


@dataclass(slots=True)
class ReceiptReport:
    job_id: str
    receipt_hash: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.outcome != "fail" for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, "pass" if ok else "fail", detail))
        return ok

    def skip(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, "skip", detail))

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "receipt_hash": self.receipt_hash,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
        }


def parse_receipt(obj: Any) -> Receipt:
    """A receipt from its JSON: bare, or wrapped as the coordinator serves it (``{"receipt": {...}}``)."""
    if isinstance(obj, dict) and isinstance(obj.get("receipt"), dict):
        obj = obj["receipt"]
    try:
        return msgspec.convert(obj, Receipt)
    except msgspec.ValidationError as exc:
        raise AitbcError(f"not a valid receipt: {exc}", reason="bad_receipt") from None


def _signature_check(report: ReceiptReport, name: str, verify: Any, receipt: Receipt, ok_detail: str) -> None:
    try:
        verify(receipt)
    except InvalidReceipt as exc:
        report.add(name, False, f"{exc.reason}: {exc.message}")
        return
    report.add(name, True, ok_detail)


def _committed_header(node: NodeClient, height: int, block_hash_hex: str | None, authorities: list[str]) -> str | None:
    """Why the header at ``height`` is not a committed, authority-signed header; None when it is."""
    raw = node.get_block(height, False)
    try:
        header = msgspec.convert({k: raw[k] for k in BlockHeader.__struct_fields__}, BlockHeader)
    except (KeyError, msgspec.ValidationError) as exc:
        return f"the node's header at height {height} does not parse: {exc}"
    if block_hash_hex is not None and block_hash(header) != block_hash_hex:
        return "the proof names a block hash that is not the header's"
    if header.proposer not in authorities:
        return f"block {height} was proposed by {header.proposer}, not a chain authority"
    try:
        verify_header_signature(header, str(raw.get("proposer_signature", "")))
    except (InvalidSignature, ValueError):
        return f"block {height}'s proposer signature does not verify"
    return None


def verify_receipt_end_to_end(
    node: NodeClient,
    coordinator: CoordinatorClient | None,
    *,
    job_id: str | None = None,
    receipt_obj: Any = None,
) -> ReceiptReport:
    """Check a receipt (given, or fetched from the coordinator by ``job_id``) against the chain."""
    if receipt_obj is None:
        if job_id is None:
            raise AitbcError("give a job id or a receipt", reason="invalid_params")
        if coordinator is None:
            raise AitbcError("no coordinator to fetch the receipt from; give the receipt", reason="no_coordinator")
        receipt_obj = coordinator.receipt(job_id)
    receipt = parse_receipt(receipt_obj)
    attached = parse_attached_proof(receipt_obj)
    if job_id is not None and receipt.job_id != job_id:
        raise AitbcError(f"the receipt is for job {receipt.job_id}, not {job_id}", reason="wrong_job")
    report = ReceiptReport(job_id=receipt.job_id, receipt_hash=compute_receipt_hash(receipt))
    _check_zkml(report, receipt, *_zkml_material(receipt_obj, coordinator, receipt))

    # Verify the signatures and the receipt's own arithmetic
    _signature_check(report, "miner_signature", verify_miner_signature, receipt, f"signed by miner {receipt.miner}")
    _signature_check(
        report,
        "coordinator_signature",
        verify_coordinator_signature,
        receipt,
        f"countersigned by coordinator {receipt.coordinator}",
    )
    try:
        verify_receipt_accounting(receipt)
        report.add("receipt_accounting", True, f"total {receipt.total_price} = units x unit price; fits the time")
    except InvalidReceipt as exc:
        report.add("receipt_accounting", False, f"{exc.reason}: {exc.message}")

    # Verify the chain: the escrow, settled with this receipt, proven against a committed header
    chain = node.get_chain_info()
    if chain["chain_id"] != receipt.chain_id:
        report.add("chain", False, f"receipt is for chain {receipt.chain_id}, the node serves {chain['chain_id']}")
        return report
    if get_job_expiry(receipt.job_id) is not None:  # a deposit job: paid in a settle batch, no escrow
        _check_deposit_payment(node, report, receipt, chain)
        return report
    escrow: Escrow | None
    try:
        escrow, payload = node.get_verified_escrow(receipt.job_id)
    except AitbcError as exc:
        report.add("settle_committed", False, f"{exc.reason}: {exc.message}")
        return report
    if escrow is None:
        report.add("settle_committed", False, f"no escrow for job {receipt.job_id} on chain (proof of absence checked)")
        return report
    header_problem = _committed_header(node, int(payload["height"]), payload.get("block_hash"), chain["authorities"])
    if header_problem is not None:
        report.add("settle_committed", False, header_problem)
        return report
    settled = escrow.state == EscrowState.SETTLED
    anchored = escrow.receipt_hash == report.receipt_hash
    report.add(
        "settle_committed",
        settled and anchored,
        f"escrow settled with this receipt's hash; Merkle proof verified against block {payload['height']}"
        if settled and anchored
        else f"escrow is {escrow.state}"
        + ("" if anchored or not settled else f" with another receipt ({escrow.receipt_hash})"),
    )
    settle_tx = _check_settle_tx(node, report, receipt)

    # Verify the miner paid is the one assigned (the countersigned receipt's), and the parties match
    assigned = _assigned_miner(coordinator, receipt.job_id)
    miner_ok = escrow.miner == receipt.miner if settled else True
    if assigned is not None:
        report.add(
            "assigned_miner",
            miner_ok and assigned == receipt.miner,
            f"coordinator assigned {assigned}; receipt and chain name {receipt.miner}"
            if miner_ok
            else f"chain paid {escrow.miner}, receipt names {receipt.miner}",
        )
    else:
        report.add(
            "assigned_miner",
            miner_ok and escrow.coordinator == receipt.coordinator,
            f"the escrow's coordinator {escrow.coordinator} countersigned {receipt.miner} as the assigned miner"
            if miner_ok and escrow.coordinator == receipt.coordinator
            else "the escrow names another coordinator or miner than the receipt",
        )

    # Verify the amounts: the miner got the receipt's total, the fee is the protocol's rate, nothing is lost
    if settled:
        report.add("amounts", *_check_amounts(escrow, receipt, chain.get("params", {})))
    else:
        report.add("amounts", False, "nothing was paid: the escrow is not settled")
    chain_proof = settle_tx.proof if isinstance(settle_tx, SettleJobZk) else None
    _check_zk_proof(report, receipt, escrow.amount, attached, chain_proof)
    return report


def parse_attached_proof(obj: Any) -> ZkReceiptProof | None:
    """The zk proof a receipt file or the coordinator's receipt carries beside the receipt (``zk_proof``)."""
    raw = obj.get("zk_proof") if isinstance(obj, dict) else None
    if raw is None:
        return None
    try:
        return msgspec.convert(raw, ZkReceiptProof)
    except msgspec.ValidationError as exc:
        raise AitbcError(f"the attached zk proof does not parse: {exc}", reason="bad_zk_proof") from None


def _check_zk_proof(
    report: ReceiptReport,
    receipt: Receipt,
    escrow_amount: int,
    attached: ZkReceiptProof | None,
    on_chain: ZkReceiptProof | None,
) -> None:
    """Re-verify, with the node's own pure verifier, every receipt proof there is: the one the receipt
    carries and the one the chain settled with (``settle_job_zk``); say what a valid one establishes."""
    proofs = [(where, p) for where, p in (("attached", attached), ("settle_job_zk", on_chain)) if p is not None]
    if attached is not None and attached == on_chain:
        proofs = [("attached and settle_job_zk", attached)]
    if not proofs:
        report.skip("zk_proof", "no zk proof: the receipt carries none and the job was settled with settle_job")
        return
    problems = [
        f"{where} proof: {problem}"
        for where, proof in proofs
        if (problem := get_receipt_proof_problem(proof, receipt, escrow_amount)) is not None
    ]
    if problems:
        report.add("zk_proof", False, "; ".join(problems))
        return
    report.add(
        "zk_proof",
        True,
        f"Groth16 proof ({' and '.join(w for w, _ in proofs)}) verifies with the pinned receipt key "
        f"(vk sha256 {RECEIPT_VK_SHA256[:12]}…) and its commitment opens to this receipt: whoever made it knew "
        f"units x unit price = total {receipt.total_price} <= escrow {escrow_amount} for this job and miner. "
        "It does not prove that any model ran or that the output or token counts are true (docs/zk.md)",
    )


def _check_deposit_payment(node: NodeClient, report: ReceiptReport, receipt: Receipt, chain: dict[str, Any]) -> None:
    """A deposit job: its paid record (kept until the job's expiry height) anchors this receipt's hash, proven
    against a committed header, and pays the receipt's miner exactly its total plus the protocol's fee."""
    try:
        paid, payload = node.get_verified_paid_job(receipt.job_id)
    except AitbcError as exc:
        report.add("settle_committed", False, f"{exc.reason}: {exc.message}")
        return
    if paid is None:
        report.add(
            "settle_committed",
            False,
            f"no deposit payment for job {receipt.job_id} on chain (not settled yet, or forgotten after its expiry "
            "height; proof of absence checked)",
        )
        return
    header_problem = _committed_header(node, int(payload["height"]), payload.get("block_hash"), chain["authorities"])
    if header_problem is not None:
        report.add("settle_committed", False, header_problem)
        return
    anchored = paid.receipt_hash == report.receipt_hash
    report.add(
        "settle_committed",
        anchored,
        f"paid from deposit {paid.deposit_id} in block {paid.height} with this receipt's hash; Merkle proof "
        f"verified against block {payload['height']}"
        if anchored
        else f"the job was paid with another receipt ({paid.receipt_hash})",
    )
    report.add(
        "assigned_miner",
        paid.miner == receipt.miner,
        f"the chain paid {paid.miner}, the miner the coordinator countersigned"
        if paid.miner == receipt.miner
        else f"the chain paid {paid.miner}, the receipt names {receipt.miner}",
    )
    expected_fee = receipt.total_price * int(chain.get("params", {}).get("protocol_fee_bps", 0)) // 10_000
    amounts_ok = paid.paid_to_miner == receipt.total_price and paid.protocol_fee == expected_fee
    report.add(
        "amounts",
        amounts_ok,
        f"receipt total {receipt.total_price}: miner got {paid.paid_to_miner}, protocol fee {paid.protocol_fee}, "
        "drawn from the deposit"
        if amounts_ok
        else f"the miner got {paid.paid_to_miner} (total {receipt.total_price}), fee {paid.protocol_fee} "
        f"(expected {expected_fee})",
    )


def _check_amounts(escrow: Escrow, receipt: Receipt, params: dict[str, Any]) -> tuple[bool, str]:
    """What the escrow records against the receipt: fee = total x the protocol's rate; paid + fee + refund =
    the escrow (nothing created or lost); the miner got exactly the total (the fee is charged on top to the
    client); the same client."""
    total, fee = receipt.total_price, escrow.protocol_fee
    expected_fee = total * int(params.get("protocol_fee_bps", 0)) // 10_000
    problems = []
    if fee != expected_fee:
        problems.append(f"protocol fee {fee} is not {params.get('protocol_fee_bps')} bps of {total} ({expected_fee})")
    if escrow.paid_to_miner + fee + escrow.refunded != escrow.amount:
        problems.append(f"paid {escrow.paid_to_miner} + fee {fee} + refund {escrow.refunded} != escrow {escrow.amount}")
    if escrow.paid_to_miner != total:
        problems.append(f"the miner got {escrow.paid_to_miner}, the receipt's total is {total}")
    if escrow.client != receipt.client:
        problems.append("the escrow's client is not the receipt's")
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"receipt total {total}: miner got {escrow.paid_to_miner}, protocol fee {fee}, "
        f"client refunded {escrow.refunded} of {escrow.amount}"
    )


def _check_settle_tx(node: NodeClient, report: ReceiptReport, receipt: Receipt) -> SettleJob | SettleJobZk | None:
    """The ``settled`` event's tx is committed and carries exactly this receipt (returned when it does)."""
    job = node.get_job(receipt.job_id) or {}
    settled = [e for e in job.get("events", []) if e.get("kind") == "settled"]
    if not settled:
        report.add("settle_tx", False, "no settle event for this job on chain")
        return None
    tx_hash = settled[-1]["tx_hash"]
    status = node.get_tx_status(tx_hash)
    if status.get("status") != "committed":
        report.add("settle_tx", False, f"settle tx {tx_hash} is {status.get('status')}")
        return None
    found = node.call("get_tx", tx_hash)
    tx = tx_from_json_obj(found["tx"])
    ok = isinstance(tx, SettleJob | SettleJobZk) and compute_receipt_hash(tx.receipt) == report.receipt_hash
    report.add(
        "settle_tx",
        ok,
        f"settle tx {tx_hash} committed in block {status.get('height')}"
        if ok
        else f"tx {tx_hash} does not carry this receipt",
    )
    return tx if ok and isinstance(tx, SettleJob | SettleJobZk) else None


def _assigned_miner(coordinator: CoordinatorClient | None, job_id: str) -> str | None:
    if coordinator is None:
        return None
    try:
        miner = coordinator.job(job_id).get("miner")
    except AitbcError:
        return None
    return str(miner) if miner else None


def _zkml_material(
    receipt_obj: Any, coordinator: CoordinatorClient | None, receipt: Receipt
) -> tuple[list[dict[str, Any]] | None, list[str] | None]:
    """EXPERIMENTAL zk-inference: the EZKL proofs (from the file's ``output``, as the result route serves
    it, or from the coordinator's result) and, when the file has them, the job's input vectors."""
    obj = receipt_obj if isinstance(receipt_obj, dict) else {}
    output = obj.get("output")
    texts = obj.get("input", {}).get("texts") if isinstance(obj.get("input"), dict) else None
    if isinstance(output, dict) and isinstance(output.get("proofs"), list):
        return output["proofs"], texts
    if receipt.model != ZKML_MODEL or coordinator is None:
        return None, texts
    try:
        proofs = coordinator.result(receipt.job_id).get("output", {}).get("proofs")
    except AitbcError:
        return None, texts
    return (proofs if isinstance(proofs, list) else None), texts


def _check_zkml(
    report: ReceiptReport, receipt: Receipt, proofs: list[dict[str, Any]] | None, texts: list[str] | None
) -> None:
    """EXPERIMENTAL: a zk-inference receipt's EZKL proofs verify against the committed circuit, the
    receipt names that circuit, and its output hash is the hash of the proven outputs (docs/zk.md)."""
    if proofs is None:
        if receipt.model == ZKML_MODEL:
            report.skip("zkml_proof", "EXPERIMENTAL zk-inference receipt, but no EZKL proofs at hand to check")
        return
    try:
        from aitbc.zk import zkml
    except ImportError:  # pragma: no cover - aitbc.zk ships with the package
        report.skip("zkml_proof", "aitbc.zk is not available")
        return
    if not zkml.is_zkml_available():
        report.skip("zkml_proof", "EXPERIMENTAL zk-inference proofs not checked: install the zkml extra (ezkl)")
        return
    paths = zkml.default_zkml_paths()
    digest = zkml.compute_zkml_model_digest(paths)
    try:
        output_hash = compute_zk_inference_output_hash(proofs)
        statement = None if texts is None else get_zk_inference_problem(proofs, texts, ZKML_SCALE)
    except ValueError as exc:
        report.add("zkml_proof", False, f"EXPERIMENTAL zk-inference: malformed proofs: {exc}")
        return
    problems = []
    if receipt.model_digest != digest:
        problems.append(f"the receipt names model digest {receipt.model_digest}, the committed circuit is {digest}")
    if output_hash != receipt.output_hash:
        problems.append("the receipt's output hash is not the hash of the proven outputs")
    if statement is not None:
        problems.append(statement)
    bad = [str(i) for i, proof in enumerate(proofs) if not zkml.verify_proof(paths, proof)]
    if bad:
        problems.append(f"EZKL proof(s) {', '.join(bad)} do not verify against the committed vk and settings")
    if problems:
        report.add("zkml_proof", False, "EXPERIMENTAL zk-inference: " + "; ".join(problems))
        return
    runs = [
        f"{[round(compute_float_of_felt(f, ZKML_SCALE), 4) for f in get_instances(p)[:ZKML_INPUTS]]} -> "
        f"{[round(compute_float_of_felt(f, ZKML_SCALE), 4) for f in get_instances(p)[ZKML_INPUTS:]]}"
        for p in proofs
    ]
    report.add(
        "zkml_proof",
        True,
        f"EXPERIMENTAL: {len(proofs)} EZKL proof(s) verify against the committed {ZKML_MODEL} circuit "
        f"(vk, settings; {digest[:19]}…): the model run on the public input gives the public output, "
        f"{'; '.join(runs)} (fixed point, 2^-{ZKML_SCALE}); the receipt's output hash is the hash of those outputs"
        + ("; the proofs are about the job's input vectors" if texts is not None else "")
        + ". Not sound against whoever generated the local development SRS; proves nothing about other models "
        "(docs/zk.md)",
    )
