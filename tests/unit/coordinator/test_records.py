"""The coordinator's job record (``aitbc.coordinator.db.records``) through the real repo and back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from aitbc.coordinator.db.engine import create_db_engine, migrate
from aitbc.coordinator.db.records import JobRecord, ReceiptRecord, StoredConstraints
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.market.lifecycle import JobLifecycle, on_claim
from aitbc.protocol.job import JobInput, JobOutput, Params
from aitbc.protocol.job_messages import SealedJobInput
from support.job_records import queued_job as record


@pytest.fixture
def repo(tmp_path: Path) -> CoordinatorRepo:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    return CoordinatorRepo(engine)


def test_plain_and_sealed_jobs_come_back_as_stored(repo: CoordinatorRepo) -> None:
    plain = record("job_a", JobInput(type="inference", model="m", prompt="hi", params=Params(stop=["."])))
    sealed = record(
        "job_b",
        SealedJobInput(sealed="00ff", reply_to="cd" * 32, params=Params(max_tokens=5)),
        constraints=StoredConstraints(miner="ait1xyz", zk_proof_required=True),
    )
    repo.insert_jobs([plain, sealed])
    assert repo.get_job("job_a") == plain
    assert repo.get_job("job_b") == sealed
    assert sealed.sealed is not None and plain.sealed is None
    assert sealed.requirements().max_tokens == 5 and plain.requirements().input_chars == 2


def test_a_claim_and_a_completion_are_written_through_the_record(repo: CoordinatorRepo) -> None:
    job = record("job_c", JobInput(type="inference", model="m", prompt="hi"))
    repo.insert_job(job)
    claimed = on_claim(job.lifecycle(), "ait1miner", "lease1", 1_100, 15_000)
    assert repo.transition_job("job_c", ("queued",), None, claimed, served_digest="sha256:x")
    assert not repo.transition_job("job_c", ("queued",), None, claimed), "a job is claimed once"
    stored = repo.get_job("job_c")
    assert stored == replace(job.with_lifecycle(claimed), served_digest="sha256:x")
    assert stored is not None and stored.lifecycle() == claimed
    assert repo.find_claimable(["m"], 1_200, 10) == []
    done = replace(stored, state="completed", result=JobOutput(text="hello"))
    receipt = ReceiptRecord("job_c", "ef" * 32, "ait1miner", {"x": 1}, 1_300)
    assert repo.complete_job(done, "lease1", receipt)
    again = repo.get_job("job_c")
    assert again is not None and again.result == JobOutput(text="hello") and again.state == "completed"
    assert repo.get_receipt("job_c") == receipt


def test_claims_and_completions_in_groups_judge_each_job(repo: CoordinatorRepo) -> None:
    """One transaction per group; a job that changed meanwhile (here: another lease) is refused alone, and
    only the winners get their receipts."""
    prompt = JobInput(type="inference", model="m", prompt="hi")
    jobs = [record(f"job_{i}", prompt, created_at_ms=1_000 + i) for i in range(4)]
    repo.insert_jobs(jobs)
    passed = []

    def choose(job: JobRecord) -> tuple[JobLifecycle, str, int] | None:
        if job.id == "job_1":
            passed.append(job.id)
            return None  # not for this miner
        return on_claim(job.lifecycle(), "ait1miner", f"lease-{job.id}", 1_100, 15_000), "sha256:x", 7

    claimed = repo.claim_queued(["m"], 1_200, 2, 10, choose)
    assert [j.id for j in claimed] == ["job_0", "job_2"] and passed == ["job_1"]
    assert all(j.state == "assigned" and j.assigned_unit_price == 7 for j in claimed)
    assert repo.get_job("job_2") == claimed[1]
    assert repo.claim_queued(["m"], 1_200, 5, 10, choose) == [repo.get_job("job_3")]
    done = [replace(j, state="completed", result=JobOutput(text=j.id)) for j in claimed]
    receipts = [ReceiptRecord(j.id, f"{i:02x}" * 32, "ait1miner", {"x": i}, 1_300) for i, j in enumerate(done)]
    won = repo.complete_jobs([(done[0], "lease-job_0", receipts[0]), (done[1], "stale-lease", receipts[1])])
    assert won == [True, False]
    assert repo.get_receipt("job_0") == receipts[0] and repo.get_receipt("job_2") is None
    assert repo.get_job("job_2") == claimed[1]  # untouched: still assigned under its lease
    assert repo.complete_jobs([(done[1], "lease-job_2", receipts[1])]) == [True]


def test_a_claim_chosen_on_a_reader_takes_only_the_jobs_still_queued(repo: CoordinatorRepo) -> None:
    """On SQLite a claim looks on a reader (``choose_claims``) and takes on the writer (``take_claims``): a
    job claimed or cancelled between the two is not taken, and the others still are, in one transaction."""
    prompt = JobInput(type="inference", model="m", prompt="hi")
    repo.insert_jobs([record(f"job_{i}", prompt, created_at_ms=1_000 + i) for i in range(3)])

    def choose_for(miner: str) -> Callable[[JobRecord], tuple[JobLifecycle, str, int]]:
        def choose(job: JobRecord) -> tuple[JobLifecycle, str, int]:
            return on_claim(job.lifecycle(), miner, f"{miner}-{job.id}", 1_100, 15_000), "sha256:x", 7

        return choose

    chosen = repo.choose_claims(["m"], 1_200, 3, 10, choose_for("ait1a"))
    assert [job.id for job, _ in chosen] == ["job_0", "job_1", "job_2"]
    assert repo.get_job("job_0") == record("job_0", prompt, created_at_ms=1_000), "choosing writes nothing"
    # meanwhile another miner's claim looks and takes job_0
    assert [j.id for j in repo.take_claims(repo.choose_claims(["m"], 1_200, 1, 10, choose_for("ait1b"))[:1])] == [
        "job_0"
    ]
    taken = repo.take_claims(chosen)
    assert [j.id for j in taken] == ["job_1", "job_2"]
    stored = repo.get_job("job_0")
    assert stored is not None and stored.miner == "ait1b" and stored.lease_id == "ait1b-job_0"
    assert all(repo.get_job(j.id) == j for j in taken)


def test_jobs_accepted_in_one_millisecond_list_newest_first_across_pages(repo: CoordinatorRepo) -> None:
    """Five jobs in one millisecond whose ids sort against their acceptance order: the list still gives the
    last accepted first, and paging by the (ms, seq, id) cursor gives each exactly once."""
    prompt = JobInput(type="inference", model="m", prompt="hi")
    accepted = [record(f"job_{9 - i}", prompt, created_at_ms=5_000, created_seq=i) for i in range(5)]
    repo.insert_jobs([record("job_old", prompt, created_at_ms=4_999, created_seq=99), *accepted])
    pages: list[list[str]] = []
    before: tuple[int, int, str] | None = None
    while True:
        page = repo.list_jobs("k1", None, None, 2, before)
        pages.append([job.id for job in page])
        if len(page) < 2:
            break
        before = (page[-1].created_at_ms, page[-1].created_seq, page[-1].id)
    assert pages == [["job_5", "job_6"], ["job_7", "job_8"], ["job_9", "job_old"], []]
    assert repo.get_job("job_7") == accepted[2], "the counter is stored with the row"
