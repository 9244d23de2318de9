"""Test vectors for every tx kind, and the field tables of docs/transactions.md, generated from the code.

    .venv/bin/python tests/vectors/tx_vectors.py --write     # after a deliberate change of a tx layout

``tests/unit/protocol/test_tx_vectors.py`` regenerates both and fails if the committed files differ: a
changed vector is a consensus change (old signatures and hashes stop matching), never an accident.
Keys are fixed seeds, so the vectors are byte-for-byte reproducible.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import msgspec

from aitbc.protocol import codec
from aitbc.protocol.crypto import KeyPair, SigningKind, signing_domain
from aitbc.protocol.deposit import SettlementEntry
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.training import TrainingCommitment
from aitbc.protocol.tx import (
    TX_TYPES,
    MultisigTransfer,
    ParamChange,
    TxBase,
    add_multisig_approvals,
    sign_multisig_approval,
    sign_tx,
    tx_bytes,
    tx_from_json_obj,
    tx_hash,
    tx_signing_bytes,
    tx_to_json_obj,
)
from aitbc.protocol.types import Wire
from aitbc.protocol.vote import DuplicateVoteEvidence, Vote
from aitbc.protocol.zk import ZkReceiptProof

ROOT = Path(__file__).resolve().parents[2]
VECTOR_DIR = ROOT / "tests" / "vectors" / "tx"
DOC = ROOT / "docs" / "transactions.md"
BEGIN, END = "<!-- generated: tx field tables (tests/vectors/tx_vectors.py) -->", "<!-- end generated -->"

CHAIN = "aitbc-vectors"
SENDER = KeyPair.from_seed(bytes(32))
OTHER = KeyPair.from_seed(bytes([1]) * 32)
THIRD = KeyPair.from_seed(bytes([2]) * 32)
H1, H2 = "11" * 32, "22" * 32


def _receipt(job_id: str) -> Receipt:
    unsigned = Receipt(
        chain_id=CHAIN,
        job_id=job_id,
        miner=OTHER.address,
        client=SENDER.address,
        coordinator=THIRD.address,
        model="smollm2-135m-instruct",
        model_digest="sha256:" + "ab" * 32,
        input_hash=H1,
        output_hash=H2,
        units=ReceiptUnits(prompt_tokens=12, completion_tokens=30, compute_ms=850),
        unit_price=100,
        total_price=4_200,
        started_at_ms=1_760_000_000_000,
        finished_at_ms=1_760_000_000_900,
    )
    return countersign_receipt(sign_receipt_as_miner(unsigned, OTHER), THIRD)


def _vote(block_hash: str) -> Vote:
    return Vote(chain_id=CHAIN, height=42, round=0, kind="prevote", block_hash=block_hash, validator=OTHER.address)


def sample_fields(kind: type[TxBase]) -> dict[str, Any]:
    """The kind-specific fields of each vector (every tx also has chain_id, sender, nonce and fee)."""
    samples: dict[str, dict[str, Any]] = {
        "transfer": {"recipient": OTHER.address, "amount": 12_500_000, "memo": "hello, AITBC ✓"},
        "open_escrow": {"job_id": "job_0123456789abcdef0123", "coordinator": THIRD.address, "amount": 5_000_000,
                        "deadline_height": 1_000},
        "settle_job": {"receipt": _receipt("job_0123456789abcdef0123")},
        "settle_job_zk": {"receipt": _receipt("job_0123456789abcdef0123"),
                          "proof": ZkReceiptProof(commitment=H1, salt=H2, proof="ab" * 16)},
        "refund_escrow": {"job_id": "job_0123456789abcdef0123"},
        "create_multisig": {"members": [SENDER.address, OTHER.address, THIRD.address], "threshold": 2},
        "multisig_transfer": {"recipient": OTHER.address, "amount": 1_000_000, "memo": "rent"},
        "stake": {"amount": 1_000_000_000},
        "delegate": {"validator": OTHER.address, "amount": 250_000_000},
        "unstake": {"validator": OTHER.address, "amount": 50_000_000},
        "report_evidence": {"evidence": DuplicateVoteEvidence(vote_a=_vote(H1), vote_b=_vote(H2))},
        "open_deposit": {"coordinator": THIRD.address, "mode": "delegated", "amount": 100_000_000,
                         "cap_per_period": 10_000_000, "period_blocks": 3_600},
        "top_up_deposit": {"deposit_id": "dep_" + "0a" * 20, "amount": 20_000_000},
        "withdraw_deposit": {"deposit_id": "dep_" + "0a" * 20, "amount": 5_000_000},
        "settle_batch": {"entries": [SettlementEntry(deposit_id="dep_" + "0a" * 20,
                                                     receipt=_receipt("dj-900-abcdefgh"))]},
        "submit_proposal": {"proposal_kind": "param_change", "title": "cheaper jobs", "description": "halve the fee",
                            "changes": [ParamChange(name="protocol_fee_bps", value=100)], "deposit": 10_000_000},
        "deposit_proposal": {"proposal_id": 3, "amount": 1_000_000},
        "vote": {"proposal_id": 3, "option": "yes"},
        "bond_miner": {"amount": 100_000_000, "models": ["sha256:" + "ab" * 32]},
        "unbond_miner": {"amount": 40_000_000},
        "submit_audit": {"job_id": "job_0123456789abcdef0123", "output_hash": H2},
        "submit_training_audit": {"job_id": "job_0123456789abcdef0123", "commitment": TrainingCommitment(
            spec_hash=H1, dataset_hash=H2, runtime_build="aitbc-training/1 torch-2.13-cpu", steps=100,
            checkpoint_every=50, checkpoint_hashes=[H1, H2, H1]), "end_hash": H2, "steps_root": H1},
        "answer_training_audit": {"job_id": "job_0123456789abcdef0123", "steps_root": H2},
        "reveal_training_step": {"job_id": "job_0123456789abcdef0123", "state_hash": H1, "proof": [H2, H1]},
    }  # fmt: skip
    return samples[codec.struct_tag(kind)]


def build(kind: type[TxBase]) -> TxBase:
    """The signed sample tx of ``kind`` (a multisig spend carries its members' approvals instead)."""
    if kind is MultisigTransfer:
        from aitbc.protocol.tx import compute_multisig_address

        account = compute_multisig_address(SENDER.address, 0)
        unsigned = MultisigTransfer(chain_id=CHAIN, sender=account, nonce=0, fee=1_000, **sample_fields(kind))
        approvals = [sign_multisig_approval(unsigned, key) for key in (SENDER, OTHER)]
        return add_multisig_approvals(unsigned, approvals)
    unsigned = kind(chain_id=CHAIN, sender=SENDER.address, nonce=7, fee=1_000, **sample_fields(kind))
    return sign_tx(unsigned, SENDER)  # type: ignore[arg-type]


def vector(kind: type[TxBase]) -> dict[str, Any]:
    tx = build(kind)
    assert tx_from_json_obj(tx_to_json_obj(tx)) == tx
    signing = tx_signing_bytes(tx)
    domain = signing_domain(CHAIN, SigningKind.TX)
    return {
        "description": f"ACE v{codec.ENCODING_VERSION} encoding of a signed {codec.struct_tag(kind)} tx; "
        "sender key: Ed25519 seed of 32 zero bytes (multisig members: seeds 00…, 01…). "
        "A change here is a consensus change.",
        "type": codec.struct_tag(kind),
        "sender_seed_hex": SENDER.seed.hex(),
        "tx": tx_to_json_obj(tx),
        "signing_bytes_hex": signing.hex(),
        "signing_domain_hex": domain.hex(),
        "canonical_bytes_hex": tx_bytes(tx).hex(),
        "tx_hash": tx_hash(tx),
    }


def render_vectors() -> dict[str, str]:
    return {
        f"{codec.struct_tag(kind)}.json": json.dumps(vector(kind), indent=2, ensure_ascii=False) + "\n"
        for kind in TX_TYPES
    }


# -- field tables ----------------------------------------------------------------------------------

WIRE_NAMES = {
    Wire.U64: "u64",
    Wire.BOOL: "bool",
    Wire.STR: "str",
    Wire.HEX: "hex",
    Wire.HASH32: "hash32",
    Wire.ADDRESS: "address",
}


def wire_name(tp: Any, nested: list[type[msgspec.Struct]]) -> str:
    """The layout of a field type in the docs' notation; nested structs are collected for their own tables."""
    if get_origin(tp) is typing.Annotated:
        base, *extras = get_args(tp)
        for extra in extras:
            if isinstance(extra, Wire):
                return WIRE_NAMES[extra]
        return wire_name(base, nested)
    if tp is bool:
        return "bool"
    if tp is str:
        return "str"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp not in nested:
            nested.append(tp)
        return f"struct {tp.__name__}"
    origin = get_origin(tp)
    if origin in (list, tuple):
        return f"list<{wire_name(get_args(tp)[0], nested)}>"
    args = [a for a in get_args(tp) if a is not type(None)]
    if len(args) == 1 and len(get_args(tp)) == 2:
        return f"optional<{wire_name(args[0], nested)}>"
    raise TypeError(f"no notation for {tp!r}")


UNSIGNED = {"signature", "approvals"}


def table(cls: type[msgspec.Struct], nested: list[type[msgspec.Struct]], top: bool) -> str:
    hints = get_type_hints(cls, include_extras=True)
    rows = []
    for name in cls.__struct_fields__:
        signed = "no (appended after signing)" if top and name in UNSIGNED else "yes"
        rows.append(f"| `{name}` | {wire_name(hints[name], nested)} | {signed if top else ''} |")
    header = "| field | wire | signed |\n|---|---|---|" if top else "| field | wire | |\n|---|---|---|"
    return header + "\n" + "\n".join(rows)


def render_tables() -> str:
    nested: list[type[msgspec.Struct]] = []
    parts = [BEGIN, ""]
    for kind in TX_TYPES:
        parts += [f"#### `{codec.struct_tag(kind)}`", "", table(kind, nested, top=True), ""]
    seen: list[type[msgspec.Struct]] = []
    while len(seen) < len(nested):
        cls = next(c for c in nested if c not in seen)
        seen.append(cls)
        parts += [f"#### struct `{cls.__name__}`", "", table(cls, nested, top=False), ""]
    parts.append(END)
    return "\n".join(parts)


def render_doc(current: str) -> str:
    start, end = current.index(BEGIN), current.index(END) + len(END)
    return current[:start] + render_tables() + current[end:]


def main() -> None:
    if "--write" not in sys.argv:
        print("dry run; pass --write to rewrite tests/vectors/tx/*.json and docs/transactions.md")
        return
    VECTOR_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render_vectors().items():
        (VECTOR_DIR / name).write_text(text, encoding="utf-8")
    DOC.write_text(render_doc(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {len(TX_TYPES)} vectors and the tables of {DOC}")


if __name__ == "__main__":
    main()
