"""settle_job_zk in the state transition: the genuine proof settles, a forged or mismatched one is
refused with ``bad_zk_proof`` and moves no money; plain settle_job is unchanged."""

from __future__ import annotations

import msgspec
import pytest

from aitbc.chain.entries import EscrowState
from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_state
from aitbc.chain.params import ChainParams
from aitbc.chain.state import StateDelta
from aitbc.chain.tx_rules import process_tx
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.tx import (
    OpenEscrow,
    SettleJob,
    SettleJobZk,
    Tx,
    sign_tx,
    tx_bytes,
    tx_from_bytes,
    tx_hash,
    verify_tx,
)
from aitbc.protocol.zk import ZkReceiptProof, commitment_hex
from aitbc.zk.prover import Groth16pyProver, make_receipt_proof
from support.chain import tx_context

CHAIN = "aitbc-test"
AUTHORITY = KeyPair.from_seed(b"\x01" * 32)
CLIENT = KeyPair.from_seed(b"\x02" * 32)
COORDINATOR = KeyPair.from_seed(b"\x03" * 32)
MINER = KeyPair.from_seed(b"\x04" * 32)
PARAMS = ChainParams(protocol_fee_bps=200, max_escrow_blocks=100)
ESCROW = 10_000
PLAIN_SETTLE_HASH_BEFORE_ZK = "9b249c03650ec12fc3ce271af9c40856c207ae5afd8578df49e6c338fded1c5d"


def make_receipt(job_id: str = "job_1", completion: int = 200, unit_price: int = 10) -> Receipt:
    r = Receipt(
        chain_id=CHAIN,
        job_id=job_id,
        miner=MINER.address,
        client=CLIENT.address,
        coordinator=COORDINATOR.address,
        model="m",
        model_digest="sha256:aa",
        input_hash="ab" * 32,
        output_hash="cd" * 32,
        units=ReceiptUnits(prompt_tokens=100, completion_tokens=completion, compute_ms=1000),
        unit_price=unit_price,
        total_price=(100 + completion) * unit_price,
        started_at_ms=1_000,
        finished_at_ms=2_000,
    )
    return countersign_receipt(sign_receipt_as_miner(r, MINER), COORDINATOR)


def open_escrow(job_id: str = "job_1") -> StateDelta:
    genesis = Genesis(
        chain_id=CHAIN,
        genesis_time_ms=1,
        authorities=[AUTHORITY.address],
        balances=[GenesisBalance(k.address, 10**9) for k in (CLIENT, COORDINATOR)],
        params=PARAMS,
    )
    delta = StateDelta(base=genesis_state(genesis))
    tx = OpenEscrow(
        chain_id=CHAIN,
        sender=CLIENT.address,
        nonce=0,
        fee=10,
        job_id=job_id,
        coordinator=COORDINATOR.address,
        amount=ESCROW,
        deadline_height=50,
    )
    process_tx(delta, sign_tx(tx, CLIENT), tx_context(AUTHORITY.address, CHAIN, PARAMS, 1, "aa" * 32))
    return delta


def settle_zk(receipt: Receipt, proof: ZkReceiptProof) -> SettleJobZk:
    tx = SettleJobZk(chain_id=CHAIN, sender=COORDINATOR.address, nonce=0, fee=10, receipt=receipt, proof=proof)
    return sign_tx(tx, COORDINATOR)


@pytest.fixture(scope="module")
def genuine(prover: Groth16pyProver) -> tuple[Receipt, ZkReceiptProof]:
    receipt = make_receipt()
    return receipt, make_receipt_proof(prover, receipt, ESCROW)


def settle_rejection(tx: SettleJobZk) -> tuple[str, StateDelta]:
    delta = open_escrow()
    with pytest.raises(InvalidTx) as info:
        process_tx(delta, tx, tx_context(AUTHORITY.address, CHAIN, PARAMS, 2, "bb" * 32))
    return info.value.reason, delta


def test_genuine_proof_settles(genuine: tuple[Receipt, ZkReceiptProof]) -> None:
    receipt, proof = genuine
    delta = open_escrow()
    tx = settle_zk(receipt, proof)
    verify_tx(tx)
    process_tx(delta, tx, tx_context(AUTHORITY.address, CHAIN, PARAMS, 2, "bb" * 32))
    escrow = delta.get_escrow("job_1")
    assert escrow is not None and escrow.state == EscrowState.SETTLED
    assert delta.get_account(MINER.address).balance == receipt.total_price


def test_forged_proof_is_rejected(genuine: tuple[Receipt, ZkReceiptProof]) -> None:
    receipt, proof = genuine
    raw = bytearray(bytes.fromhex(proof.proof))
    raw[70] ^= 0x01
    reason, delta = settle_rejection(settle_zk(receipt, msgspec.structs.replace(proof, proof=raw.hex())))
    assert reason == TxRejection.BAD_ZK_PROOF
    assert delta.get_account(MINER.address).balance == 0
    assert delta.get_escrow("job_1").state == EscrowState.OPEN  # type: ignore[union-attr]


def test_garbage_proof_is_rejected(genuine: tuple[Receipt, ZkReceiptProof]) -> None:
    receipt, proof = genuine
    for junk in ("", "00" * 256, "ff" * 300):
        reason, _ = settle_rejection(settle_zk(receipt, msgspec.structs.replace(proof, proof=junk)))
        assert reason == TxRejection.BAD_ZK_PROOF


def test_proof_for_another_receipt_is_rejected(
    prover: Groth16pyProver, genuine: tuple[Receipt, ZkReceiptProof]
) -> None:
    receipt, _ = genuine
    # a valid proof about a cheaper receipt for the same job: its commitment does not open to this receipt
    other = make_receipt(completion=150)
    other_proof = make_receipt_proof(prover, other, ESCROW)
    reason, _ = settle_rejection(settle_zk(receipt, other_proof))
    assert reason == TxRejection.BAD_ZK_PROOF


def test_proof_for_another_job_is_rejected(prover: Groth16pyProver) -> None:
    """Same fields and salt, other job id: the commitment opens, but the proof is bound to the other job."""
    receipt = make_receipt()
    elsewhere = make_receipt_proof(prover, make_receipt(job_id="job_2"), ESCROW, salt=42)
    reason, _ = settle_rejection(settle_zk(receipt, elsewhere))
    assert reason == TxRejection.BAD_ZK_PROOF


def test_proof_against_another_escrow_amount_is_rejected(prover: Groth16pyProver) -> None:
    receipt = make_receipt()
    reason, _ = settle_rejection(settle_zk(receipt, make_receipt_proof(prover, receipt, ESCROW + 1)))
    assert reason == TxRejection.BAD_ZK_PROOF


def test_wrong_salt_is_rejected(genuine: tuple[Receipt, ZkReceiptProof]) -> None:
    receipt, proof = genuine
    reason, _ = settle_rejection(settle_zk(receipt, msgspec.structs.replace(proof, salt=commitment_hex(7))))
    assert reason == TxRejection.BAD_ZK_PROOF


def test_settle_job_zk_round_trips_and_plain_settle_keeps_its_bytes(genuine: tuple[Receipt, ZkReceiptProof]) -> None:
    receipt, proof = genuine
    tx = settle_zk(receipt, proof)
    decoded: Tx = tx_from_bytes(tx_bytes(tx))
    assert decoded == tx
    plain = sign_tx(
        SettleJob(chain_id=CHAIN, sender=COORDINATOR.address, nonce=0, fee=10, receipt=receipt), COORDINATOR
    )
    # the hash this very settle_job had before settle_job_zk existed (computed with main's code)
    assert tx_hash(plain) == PLAIN_SETTLE_HASH_BEFORE_ZK
