"""The coordinator matching through the pool hub (``--poolhub-url``), in process by default, and falling back.

Real processes: a pool hub, a coordinator, echo miners (tests/integration/coordinator/coordinator_harness.py),
plus signed fake miners to set up a ranking the test controls.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from coordinator_harness import (
    CoordinatorProcess,
    MinerProcess,
    Stack,
    echo_job,
    fake_model,
    run_cli,
    submit,
    wait_done,
    wait_until,
)
from poolhub_harness import PoolHubProcess

from support.ports import free_port


@pytest.fixture(scope="module")
def hub_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolHubProcess, Stack]]:
    base: Path = tmp_path_factory.mktemp("coordinator-hub")
    hub = PoolHubProcess(base / "hub", token="hub-token")
    hub.start()
    coordinator = CoordinatorProcess(
        base / "coordinator",
        lease_seconds=2.0,
        extra_args=["--poolhub-url", hub.url, "--poolhub-token", "hub-token"],
    )
    coordinator.start()
    miners = [MinerProcess(coordinator, base / f"miner{i}") for i in range(2)]
    for miner in miners:
        miner.start()
    api_key = coordinator.create_key_cli("--name", "tests")
    for miner in miners:
        miner.wait_registered()
    stack = Stack(coordinator, api_key, miners, base)
    try:
        yield hub, stack
    finally:
        stack.stop()
        assert hub.stop() == 0


def hub_miners(hub: PoolHubProcess) -> dict[str, dict[str, Any]]:
    return {m["miner"]: m for m in httpx.get(f"{hub.url}/v1/miners", timeout=5).json()["miners"]}


def test_coordinator_feeds_the_hub_and_explains_through_it(hub_stack: tuple[PoolHubProcess, Stack]) -> None:
    hub, stack = hub_stack
    addresses = {m.address for m in stack.miners}
    wait_until(lambda: addresses <= set(hub_miners(hub)), 10, "the miners to reach the pool hub")
    with stack.http() as http:
        jobs = [submit(http, echo_job(f"job {i}"))["job_id"] for i in range(6)]
        done = [wait_done(http, job_id) for job_id in jobs]
    assert {d["state"] for d in done} == {"completed"}

    def outcomes_arrived() -> bool:
        return sum(m["stats"]["completed"] for m in hub_miners(hub).values()) >= 6

    wait_until(outcomes_arrived, 10, "the outcomes to reach the pool hub")
    measured = [m for m in hub_miners(hub).values() if m["stats"]["completed"]]
    assert all(m["stats"]["ttft_ms"] is not None and m["online"] for m in measured)

    explained = run_cli("match", "explain", jobs[0], "--coordinator", stack.url, "--api-key", stack.api_key)
    assert explained.returncode == 0, explained.stderr
    assert "policy poolhub" in explained.stdout and "success" in explained.stdout
    assert any(address in explained.stdout for address in addresses)

    listed = run_cli("miners", "list", "--poolhub", hub.url)
    assert listed.returncode == 0, listed.stderr
    assert all(address in listed.stdout for address in addresses)
    board = run_cli("miners", "leaderboard", "--poolhub", hub.url, "--model", "echo")
    assert board.returncode == 0 and "echo" in board.stdout
    first = sorted(addresses)[0]
    shown = run_cli("miners", "show", first, "--poolhub", hub.url)
    assert shown.returncode == 0 and first in shown.stdout
    missing = run_cli("miners", "show", "ait1nobody", "--poolhub", hub.url)
    assert missing.returncode == 1 and "unknown_miner" in missing.stderr


def test_the_hub_decides_who_gets_the_job(hub_stack: tuple[PoolHubProcess, Stack]) -> None:
    """Two waiting fake miners serving the same model: the cheaper one gets each job, whoever asked first."""
    hub, stack = hub_stack
    model = fake_model(price=1)
    cheap = stack.fake_miner([model])
    dear = stack.fake_miner([{**model, "unit_price": 40}])
    wait_until(lambda: {cheap.address, dear.address} <= set(hub_miners(hub)), 10, "the fakes to reach the hub")
    winners = []
    with stack.http() as http, concurrent.futures.ThreadPoolExecutor(2) as pool:
        for i in range(3):
            dear_claim = pool.submit(dear.claim, 1.5)
            time.sleep(0.1)  # the dear miner has waited longest: without ranking it would get the job
            cheap_claim = pool.submit(cheap.claim, 1.5)
            time.sleep(0.1)
            job_id = submit(http, {"type": "inference", "model": model["name"], "input": {"prompt": f"p{i}"}})["job_id"]
            got = {"cheap": (cheap, cheap_claim.result()), "dear": (dear, dear_claim.result())}
            for name, (fake, claimed) in got.items():
                if claimed is not None:
                    assert claimed["job"]["job_id"] == job_id
                    winners.append(name)
                    fake.release(job_id, claimed["lease"]["lease_id"])
            http.post(f"/api/v1/jobs/{job_id}/cancel")
    assert winners == ["cheap", "cheap", "cheap"]


def test_an_unreachable_hub_falls_back_to_in_process_matching(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    coordinator = CoordinatorProcess(tmp_path / "coordinator", lease_seconds=2.0, extra_args=["--poolhub-url", dead])
    coordinator.start()
    miners = [MinerProcess(coordinator, tmp_path / f"miner{i}") for i in range(2)]
    try:
        for miner in miners:
            miner.start()
        api_key = coordinator.create_key_cli("--name", "tests")
        for miner in miners:
            miner.wait_registered()
        stack = Stack(coordinator, api_key, miners, tmp_path)
        with stack.http() as http:
            jobs = [submit(http, echo_job(f"job {i}"))["job_id"] for i in range(4)]
            assert {wait_done(http, j)["state"] for j in jobs} == {"completed"}
            explained = http.get(f"/api/v1/jobs/{jobs[0]}/match").json()["ranking"]
        assert explained["policy"] == "local (pool hub unreachable)"
        assert {c["miner"] for c in explained["candidates"]} == {m.address for m in miners}
    finally:
        for miner in miners:
            miner.stop()
        coordinator.stop()
        coordinator.dispose()
