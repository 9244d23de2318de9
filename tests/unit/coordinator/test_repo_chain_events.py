"""Recording the chain's closed payments: the follower's cursor moves only with the write that names it."""

from __future__ import annotations

from pathlib import Path

from aitbc.coordinator.db.engine import create_db_engine, migrate
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.protocol.job import JobInput
from support.job_records import queued_job


def settled(height: int) -> dict[str, object]:
    return {"payment_state": "settled", "payment_height": height, "paid_to_miner": 9, "protocol_fee": 1}


def test_slices_without_a_seq_leave_the_cursor_and_the_last_slice_moves_it(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    repo = CoordinatorRepo(engine)
    repo.insert_jobs(
        [
            queued_job(f"j{i}", JobInput(type="inference", model="m", prompt="hi"), payment_state="reserved")
            for i in range(3)
        ]
    )
    repo.apply_chain_events("chain", 5, [])
    repo.apply_chain_events("chain", None, [("j0", settled(7)), ("j1", settled(7))])
    assert repo.get_chain_cursor("chain") == 5, "a slice before the last must not move the cursor"
    repo.apply_chain_events("chain", 9, [("j2", settled(8))])
    assert repo.get_chain_cursor("chain") == 9
    payments = repo.get_payments(["j0", "j1", "j2"])
    assert {job_id: job.payment_height for job_id, job in payments.items()} == {"j0": 7, "j1": 7, "j2": 8}
