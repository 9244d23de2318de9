"""Two REAL coordinator replicas on one throwaway PostgreSQL, paid through a REAL node: one settles, and a
replica killed with -9 mid-run loses no job and no payment.

Each replica has its own echo miner; a client posts deposit jobs round-robin over both, moving on to the
other replica when one does not answer (what any load balancer does). Midway the replica that settles is
killed with SIGKILL and not restarted: the survivor takes the settler lock over, requeues the jobs whose
leases the dead replica's miner held, and settles everything. The chain is the ground truth: every job
stored completed exactly once with one receipt, and was paid exactly once (one ``settled`` event, the
deposit down by exactly the sum of the charges).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa
from coordinator_harness import (
    CoordinatorProcess,
    FakeMiner,
    MinerProcess,
    echo_job,
    fake_model,
    launch_replicas,
    run_cli,
    wait_until,
)
from test_paid_jobs import MINER_PRICE, PaidStack

from aitbc.chain.deposits import compute_job_charge
from aitbc.chain.params import ChainParams
from aitbc.client.deposit import open_deposit
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.coordinator.db.schema import jobs, receipts
from aitbc.protocol.crypto import KeyPair

if TYPE_CHECKING:
    from conftest import NodeProcess

    from support.postgres import PostgresServer

OPENING = 1_000_000_000
TERMINAL = ("completed", "failed", "cancelled", "expired")


@dataclass
class Replicated:
    node: NodeProcess
    replicas: list[CoordinatorProcess]
    miners: list[MinerProcess]
    funding: PaidStack

    def settling(self) -> list[CoordinatorProcess]:
        found = []
        for replica in self.replicas:
            if replica.running:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{replica.url}/healthz", timeout=5).json()["replica"]["settling"]:
                        found.append(replica)
        return found


@pytest.fixture
def replicated(
    shared_node: NodeProcess, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicated]:
    base: Path = tmp_path_factory.mktemp("replica-payments")
    url = postgres.create_database(f"paid_replicas_{int(time.time() * 1000)}")
    replicas = launch_replicas(
        base, 2, url, lease_seconds=3.0, node_url=shared_node.rpc_url, chain_id=shared_node.chain_id
    )
    miners = [
        MinerProcess(r, base / f"miner{i}", price=MINER_PRICE, extra_args=("--concurrency", "8", "--claim-batch", "8"))
        for i, r in enumerate(replicas)
    ]
    funding = PaidStack(shared_node, replicas[0], miners[0], base)
    try:
        funding.fund(replicas[0].address)
        for miner in miners:
            miner.start()
        for miner in miners:
            miner.wait_registered()
        yield Replicated(shared_node, replicas, miners, funding)
    finally:
        for miner in miners:
            miner.stop()
        for replica in replicas:
            replica.stop()
            replica.dispose()


def deposit_key(stack: Replicated, opening: int) -> tuple[str, str, str]:
    """A funded client's delegated deposit for the coordinator, and an API key bound to it: (token, key id,
    deposit id)."""
    key = KeyPair.generate()
    stack.funding.fund(key.address, amount=opening + 1_000_000)
    first = stack.replicas[0]
    with stack.funding.rpc() as rpc:
        opened = open_deposit(
            rpc, key, first.address, opening, mode="delegated", cap_per_period=opening, period_blocks=1_000
        )
    token = first.create_key_cli("--client", key.address, "--rate", "10000", "--burst", "20000")
    (row,) = [k for k in CoordinatorRepo(first.engine).list_api_keys() if k.client == key.address]
    bound = run_cli(
        "coordinator", "keys", "bind", row.id, opened.deposit_id, "--data-dir", str(first.data_dir),
        "--database-url", first.db_url,
    )  # fmt: skip
    assert bound.returncode == 0, bound.stdout + bound.stderr
    return token, row.id, opened.deposit_id


def test_exactly_one_replica_settles(replicated: Replicated) -> None:
    wait_until(lambda: len(replicated.settling()) == 1, 20, "one replica to hold the settler lock")
    for _ in range(10):  # and it stays one while the other keeps trying
        assert len(replicated.settling()) == 1


def test_a_deposit_reserved_through_one_replica_is_counted_by_the_other(replicated: Replicated) -> None:
    """Each replica rebuilds its deposit books from the jobs table: jobs reserved through A count on B, so
    B refuses (402) what the deposit can no longer cover, instead of overcommitting it."""
    a, b = replicated.replicas
    with replicated.funding.rpc() as rpc:
        params = msgspec.convert(rpc.get_chain_info()["params"], ChainParams)
    max_price = 2_000_000
    charge = compute_job_charge(max_price, params)
    token, _, _ = deposit_key(replicated, 3 * charge + charge // 2)
    model = fake_model(price=MINER_PRICE)
    idle = FakeMiner(a)  # serves the model and never claims: the jobs stay queued, their charges reserved
    try:
        idle.register([model])
        body = {**echo_job("reserved"), "model": model["name"], "max_price": max_price}
        with (
            httpx.Client(base_url=a.url, headers={"X-Api-Key": token}, timeout=30) as on_a,
            httpx.Client(base_url=b.url, headers={"X-Api-Key": token}, timeout=30) as on_b,
        ):
            wait_until(
                lambda: any(m["name"] == model["name"] for m in on_b.get("/api/v1/models").json()["models"]),
                10,
                "replica B to learn the miner registered on A",
            )
            for _ in range(3):
                answer = on_a.post("/api/v1/jobs", json=body)
                assert answer.status_code == 201, answer.text
            wait_until(
                lambda: on_b.get("/api/v1/account").json()["reserved"] == 3 * charge,
                10,
                "replica B to count the reservations made through A",
            )
            refused = on_b.post("/api/v1/jobs", json=body)
            assert refused.status_code == 402, refused.text
            assert refused.json()["error"]["reason"] == "insufficient_deposit"
    finally:
        idle.close()


def test_1000_jobs_through_two_replicas_one_killed_mid_run(replicated: Replicated) -> None:
    run_replica_kill_test(replicated, jobs=1_000)


def run_replica_kill_test(stack: Replicated, jobs: int) -> None:
    live = [r for r in stack.replicas if r.running]
    assert len(live) == 2
    token, key_id, deposit_id = deposit_key(stack, OPENING)
    wait_until(lambda: len(stack.settling()) == 1, 20, "one replica to settle")
    (victim,) = stack.settling()
    survivor = next(r for r in stack.replicas if r is not victim)
    clients = {r.url: httpx.Client(base_url=r.url, headers={"X-Api-Key": token}, timeout=30) for r in live}

    def post(i: int) -> str | None:
        """Round-robin over the replicas; one that does not answer is skipped (a load balancer's retry)."""
        for replica in (live[i % 2], live[(i + 1) % 2]):
            try:
                answer = clients[replica.url].post("/api/v1/jobs", json=echo_job(f"replicated job {i}"))
            except httpx.HTTPError:
                continue
            assert answer.status_code == 201, answer.text
            return str(answer.json()["job_id"])
        return None

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            first = [j for j in pool.map(post, range(jobs // 2)) if j]
            wait_until(lambda: _count(survivor, first, "completed") >= len(first) // 3, 120, "some jobs to complete")
            victim.proc.kill()  # type: ignore[union-attr]  # SIGKILL: no shutdown, no lock released by hand
            victim.proc.wait(10)  # type: ignore[union-attr]
            second = [j for j in pool.map(post, range(jobs // 2, jobs)) if j]
        submitted = first + second
        assert len(submitted) == jobs  # the survivor took every post the dead replica could not
        wait_until(lambda: stack.settling() == [survivor], 30, "the survivor to take the settler lock over")
        stored = _jobs_of_key(survivor, key_id)  # the ground truth: every job the replicas stored
        assert set(submitted) <= set(stored)
        timeout = 60 + jobs * 0.3
        wait_until(lambda: _count(survivor, stored, "completed") == len(stored), timeout, "every job to complete")
        wait_until(
            lambda: _payment_states(survivor, stored) <= {"settled"}, timeout, "every job to be settled", interval=0.5
        )
    finally:
        for client in clients.values():
            client.close()
    with survivor.engine.connect() as conn:
        per_job = Counter(conn.execute(sa.select(receipts.c.job_id).where(receipts.c.job_id.in_(stored))).scalars())
    assert per_job == Counter(stored), "a job without its one receipt, or with two"
    with stack.funding.rpc() as rpc:
        results = rpc.batch([("get_paid_job", [j]) for j in stored])
        paid = {
            j: r["paid"] for j, r in zip(stored, results, strict=True) if not isinstance(r, Exception) and r["paid"]
        }
        assert set(paid) == set(stored), set(stored) - set(paid)
        settled = Counter(
            e["job_id"] for e in rpc.iter_job_events(survivor.address) if e["kind"] == "settled" and e["job_id"] in paid
        )
        assert settled == Counter(stored), {j: n for j, n in settled.items() if n != 1}
        params = msgspec.convert(rpc.get_chain_info()["params"], ChainParams)
        charges = sum(compute_job_charge(p["paid_to_miner"], params) for p in paid.values())
        deposit, _ = rpc.get_verified_deposit(deposit_id)
        assert deposit is not None and deposit.balance == OPENING - charges and deposit.jobs_paid == len(stored)


def _count(replica: CoordinatorProcess, ids: list[str], state: str) -> int:
    with replica.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(jobs.c.id.in_(ids), jobs.c.state == state)
        return int(conn.execute(query).scalar_one())


def _jobs_of_key(replica: CoordinatorProcess, key_id: str) -> list[str]:
    with replica.engine.connect() as conn:
        return [str(j) for j in conn.execute(sa.select(jobs.c.id).where(jobs.c.api_key_id == key_id)).scalars()]


def _payment_states(replica: CoordinatorProcess, ids: list[str]) -> set[Any]:
    with replica.engine.connect() as conn:
        return set(conn.execute(sa.select(jobs.c.payment_state).where(jobs.c.id.in_(ids))).scalars())
