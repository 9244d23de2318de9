"""The amounts check of receipt verification, against escrows the chain could (and could not) have written."""

from __future__ import annotations

import msgspec
import pytest

from aitbc.chain.entries import Escrow
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError
from aitbc.protocol.receipt import Receipt, ReceiptUnits
from aitbc.wallet.receipts import _check_amounts, parse_receipt

CLIENT, MINER, COORD = (KeyPair.from_seed(bytes([i]) * 32).address for i in (1, 2, 3))
PARAMS = {"protocol_fee_bps": 200}


def _receipt(total: int = 3_000) -> Receipt:
    return Receipt(
        chain_id="c",
        job_id="j",
        miner=MINER,
        client=CLIENT,
        coordinator=COORD,
        model="m",
        model_digest="d",
        input_hash="00" * 32,
        output_hash="11" * 32,
        units=ReceiptUnits(prompt_tokens=10, completion_tokens=20, compute_ms=5),
        unit_price=total // 30,
        total_price=total,
        started_at_ms=0,
        finished_at_ms=10,
    )


def _escrow(paid: int, fee: int, refunded: int, amount: int = 10_000, client: str = CLIENT) -> Escrow:
    return Escrow(
        job_id="j",
        client=client,
        coordinator=COORD,
        amount=amount,
        deadline_height=10,
        opened_height=1,
        state="settled",
        miner=MINER,
        paid_to_miner=paid,
        protocol_fee=fee,
        refunded=refunded,
    )


@pytest.mark.parametrize(
    ("escrow", "ok"),
    [
        (_escrow(3_000, 60, 6_940), True),  # fee on top of the total
        (_escrow(2_940, 60, 7_000), False),  # fee out of the total: the miner must get the whole total
        (_escrow(3_000, 50, 6_950), False),  # wrong fee rate
        (_escrow(3_000, 60, 7_000), False),  # tokens created
        (_escrow(2_000, 60, 7_940), False),  # the miner underpaid
        (_escrow(3_000, 60, 6_940, client=MINER), False),  # another client
    ],
)
def test_check_amounts(escrow: Escrow, ok: bool) -> None:
    passed, detail = _check_amounts(escrow, _receipt(), PARAMS)
    assert passed is ok, detail


def test_parse_receipt_bare_or_wrapped() -> None:
    receipt = _receipt()
    bare = msgspec.to_builtins(receipt)
    assert parse_receipt(bare) == receipt
    assert parse_receipt({"job_id": "j", "receipt_hash": "x", "receipt": bare}) == receipt
    with pytest.raises(AitbcError) as exc:
        parse_receipt({**bare, "total_price": -1})
    assert exc.value.reason == "bad_receipt"
