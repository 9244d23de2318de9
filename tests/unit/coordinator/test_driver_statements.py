"""The hot statements on the driver's cursor (``aitbc.coordinator.db.driver``) read and write the same rows as
SQLAlchemy's own execution: rows written before (by SQLAlchemy's JSON type) read back alike, integers past
64 bits stay exact, and a duplicate job id is still a ``duplicate_job`` refusal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from aitbc.coordinator.db.driver import DriverStatement, is_integrity_error
from aitbc.coordinator.db.engine import create_db_engine, migrate
from aitbc.coordinator.db.records import JobRecord, ReceiptRecord, StoredConstraints
from aitbc.coordinator.db.repo import BY_ID_CHUNK, CoordinatorRepo
from aitbc.coordinator.db.schema import jobs
from aitbc.market.lifecycle import JobRuleViolation, on_claim
from aitbc.protocol.job import JobInput, JobOutput
from support.job_records import queued_job as record


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    return engine


def test_a_row_sqlalchemy_wrote_reads_back_the_same_through_the_driver(engine: sa.Engine) -> None:
    """Databases written before the driver path hold JSON ``null`` (not SQL NULL) in an unfinished job's
    ``result``, and JSON the stdlib encoder wrote: both read back as they were stored."""
    job = record("job_old", JobInput(type="inference", model="m", prompt="hi"))
    row = {name: getattr(job, name) for name in JobRecord.__slots__}
    row.update(input=msgspec.to_builtins(job.input), constraints=msgspec.to_builtins(job.constraints), result=None)
    with engine.begin() as conn:
        conn.execute(sa.insert(jobs), row)  # SQLAlchemy's JSON type: result stored as the JSON text 'null'
        assert conn.execute(sa.text("SELECT result FROM jobs")).scalar() == "null"
    repo = CoordinatorRepo(engine)
    assert repo.get_job("job_old") == job
    assert repo.get_jobs(["job_old", "job_old", "nope"]) == {"job_old": job}


def test_json_columns_and_big_integers_round_trip(engine: sa.Engine) -> None:
    repo = CoordinatorRepo(engine)
    job = record(
        "job_big",
        JobInput(type="inference", model="m", prompt='é ✓ \x00 "quoted"'),
        constraints=StoredConstraints(miner="ait1x", zk_proof_required=True),
        max_price=2**63 - 1,
    )
    repo.insert_jobs([job])
    assert repo.get_job("job_big") == job
    with engine.connect() as conn:
        text = conn.execute(sa.text("SELECT input FROM jobs")).scalar()
    assert msgspec.json.decode(text) == msgspec.to_builtins(job.input), "stored as plain JSON text"
    claimed = on_claim(job.lifecycle(), "ait1x", "lease1", 1_100, 15_000)
    assert repo.transition_job("job_big", ("queued",), None, claimed)
    done = replace(job.with_lifecycle(claimed), state="completed", result=JobOutput(text="out ✓"))
    receipt = ReceiptRecord("job_big", "ef" * 32, "ait1x", {"total_price": 2**70, "units": [1, 2]}, 1_300)
    assert repo.complete_jobs([(done, "lease1", receipt)]) == [True]
    assert repo.get_receipt("job_big") == receipt, "an integer past 64 bits in JSON stays exact"
    assert repo.get_job("job_big") == done


def test_a_duplicate_id_is_refused_as_a_duplicate_job(engine: sa.Engine) -> None:
    repo = CoordinatorRepo(engine)
    job = record("job_dup", JobInput(type="inference", model="m", prompt="hi"))
    repo.insert_jobs([job])
    with pytest.raises(JobRuleViolation) as refused:
        repo.insert_jobs([job])
    assert refused.value.reason == "duplicate_job"
    assert repo.get_job("job_dup") == job


def test_a_statement_carries_its_own_values_and_takes_the_rest_by_name(engine: sa.Engine) -> None:
    query = sa.select(jobs.c.id).where(jobs.c.state == "queued", jobs.c.model == sa.bindparam("model")).limit(5)
    statement = DriverStatement.compile(query, engine.dialect)
    assert statement.order is not None and "model" in statement.order
    assert set(statement.fixed.values()) >= {"queued", 5}
    CoordinatorRepo(engine).insert_jobs([record("job_q", JobInput(type="inference", model="m", prompt="hi"))])
    with engine.connect() as conn:
        assert statement.fetch(conn, {"model": "m"}) == [{"id": "job_q"}]
        assert statement.fetch(conn, {"model": "other"}) == []
    insert = DriverStatement.compile(sa.insert(jobs), engine.dialect)
    with pytest.raises(Exception) as failed, engine.begin() as conn:
        row = {name: None for name in insert.order or ()}
        insert.execute_many(conn, [{**row, "id": "job_q"}])
    assert is_integrity_error(failed.value, engine.dialect)
    assert not is_integrity_error(ValueError("x"), engine.dialect)


def test_reads_by_id_span_chunks(engine: sa.Engine) -> None:
    repo = CoordinatorRepo(engine)
    prompt = JobInput(type="inference", model="m", prompt="hi")
    jobs_in = [record(f"job_{i:03d}", prompt, created_at_ms=1_000 + i) for i in range(2 * BY_ID_CHUNK + 7)]
    repo.insert_jobs(jobs_in)
    ids = [j.id for j in reversed(jobs_in)] + ["nope", jobs_in[0].id]
    assert repo.get_jobs(ids) == {j.id: j for j in jobs_in}
    payments = repo.get_payments(ids)
    assert sorted(payments) == sorted(j.id for j in jobs_in)
    assert all(p.api_key_id == "k1" and p.payment_state is None for p in payments.values())
