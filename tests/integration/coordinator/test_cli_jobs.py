"""The job commands as a newcomer meets them (issue 14), against the real coordinator: ``job list`` shows whole
ids at 80 columns and has ``--json``; amounts are AITBC unless ``--base-units``; a job the live market cannot
serve at its price is refused at submission (402, with the amount needed) instead of queued until its ttl."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
from coordinator_harness import Stack, fake_model, submit


def _cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "aitbc", *args], capture_output=True, text=True, timeout=90, env=env, check=False
    )


def test_job_list_shows_whole_ids_at_80_columns_and_json(stack: Stack) -> None:
    with stack.http() as http:
        job_ids = {submit(http, {"type": "inference", "model": "echo", "input": {"prompt": f"list {i}"}})["job_id"]
                   for i in range(3)}  # fmt: skip
    where = ["--coordinator", stack.url, "--api-key", stack.api_key]
    table = _cli("job", "list", "--limit", "3", *where)
    assert table.returncode == 0, table.stderr
    assert job_ids <= set(table.stdout.split()), table.stdout  # every id whole, on one line
    as_json = _cli("job", "list", "--limit", "3", "--json", *where)
    assert as_json.returncode == 0, as_json.stderr
    page = orjson.loads(as_json.stdout)
    assert {j["job_id"] for j in page["jobs"]} == job_ids and "next_cursor" in page


def test_a_job_the_market_cannot_serve_at_its_price_is_refused_with_the_amount_needed(stack: Stack) -> None:
    model = fake_model(price=1_000)  # 1,000 base units per token
    stack.fake_miner([model])
    body = {"type": "inference", "model": model["name"], "input": {"prompt": "abcd"}, "params": {"max_tokens": 16}}
    needed = 1_000 * (4 + 64 + 16)  # unit price x (prompt chars + template allowance + max_tokens)
    with stack.http() as http:
        refused = http.post("/api/v1/jobs", json={**body, "max_price": needed - 1})
        assert refused.status_code == 402, refused.text
        error = refused.json()["error"]
        assert error["reason"] == "max_price_too_low" and error["needed"] == needed and error["needed_aitbc"] == "0.084"
        assert submit(http, {**body, "max_price": needed})["state"] == "queued"
    # The CLI takes AITBC, or base units when told, and says what would be needed.
    where = ["--coordinator", stack.url, "--api-key", stack.api_key, "--model", model["name"], "--max-tokens", "16"]
    low = _cli("job", "submit", "--prompt", "abcd", "--max-price", "0.08", *where)
    assert low.returncode == 1 and "max_price_too_low" in low.stderr and "0.084 AITBC" in low.stderr, low.stderr
    ok = _cli("job", "submit", "--prompt", "abcd", "--max-price", str(needed), "--base-units", *where)
    assert ok.returncode == 0 and "queued" in ok.stdout, ok.stdout + ok.stderr
    bad = _cli("job", "submit", "--prompt", "abcd", "--max-price", "0.5", "--base-units", *where)
    assert bad.returncode == 1 and "whole number of base units" in bad.stderr
