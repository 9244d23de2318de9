"""Jobs paid from a deposit, through REAL processes: a node, a coordinator with ``--node-url``, an echo miner.

The product's plain ``POST /api/v1/jobs`` (no job_id, no max_price) with an API key bound to a funded
delegated deposit is accepted at once, runs, and is settled on chain in a batch. The chain is the
ground truth: every completed job paid exactly once (``get_paid_job`` with proof), nothing for the
rest, and the deposit down by exactly the sum of the charges — across a ``kill -9`` of the coordinator.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest
from coordinator_harness import CoordinatorProcess, MinerProcess, echo_job, run_cli, wait_until
from test_paid_jobs import MINER_PRICE, PaidStack, balance

from aitbc.chain.deposits import compute_job_charge
from aitbc.chain.params import ChainParams
from aitbc.client.deposit import open_deposit, sign_deposit_job
from aitbc.client.node import NodeClient
from aitbc.coordinator.db.payment_records import ApiKey
from aitbc.protocol.crypto import KeyPair
from aitbc.runtime.keyfile import write_keyfile

if TYPE_CHECKING:
    from conftest import NodeProcess

OPENING = 50_000_000


@pytest.fixture(scope="module")
def dstack(shared_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaidStack]:
    base = tmp_path_factory.mktemp("deposits")
    coordinator = CoordinatorProcess(
        base / "coordinator", lease_seconds=3.0, node_url=shared_node.rpc_url, chain_id=shared_node.chain_id
    )
    coordinator.start()
    # batch mode: up to 16 jobs per claim-many long-poll, results delivered several per request
    miner = MinerProcess(
        coordinator, base / "miner", price=MINER_PRICE, extra_args=("--concurrency", "16", "--claim-batch", "16")
    )
    stack = PaidStack(shared_node, coordinator, miner, base)
    try:
        stack.fund(coordinator.address)
        miner.start()
        miner.wait_registered()
        yield stack
    finally:
        miner.stop()
        coordinator.stop()
        coordinator.dispose()


def deposit_client(stack: PaidStack, opening: int = OPENING, mode: str = "delegated") -> tuple[KeyPair, str, str]:
    """A funded client with a deposit for the coordinator (delegated: capped), and an API key bound to it by
    the CLI."""
    key = KeyPair.generate()
    stack.fund(key.address, amount=opening + 1_000_000)
    cap = (opening, 1_000) if mode == "delegated" else (0, 0)
    with stack.rpc() as rpc:
        opened = open_deposit(
            rpc, key, stack.coordinator.address, opening, mode=mode, cap_per_period=cap[0], period_blocks=cap[1]
        )
    token = stack.coordinator.create_key_cli("--client", key.address, "--rate", "10000", "--burst", "20000")
    rows = [r for r in _keys(stack) if r.client == key.address]
    assert len(rows) == 1
    bound = run_cli(
        "coordinator", "keys", "bind", rows[0].id, opened.deposit_id, "--data-dir", str(stack.coordinator.data_dir)
    )
    assert bound.returncode == 0, bound.stdout + bound.stderr
    return key, token, opened.deposit_id


def _keys(stack: PaidStack) -> list[ApiKey]:
    from aitbc.coordinator.db.repo import CoordinatorRepo

    return CoordinatorRepo(stack.coordinator.engine).list_api_keys()


def submit(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return http.post("/api/v1/jobs", json=body)


def wait_done(http: httpx.Client, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] in ("completed", "failed", "cancelled", "expired") else None

    result: dict[str, Any] = wait_until(done, timeout, f"job {job_id} to finish", interval=0.1)
    return result


def paid_jobs(rpc: NodeClient, job_ids: list[str]) -> dict[str, Any]:
    results = rpc.batch([("get_paid_job", [j]) for j in job_ids])
    return {j: r["paid"] for j, r in zip(job_ids, results, strict=True) if not isinstance(r, Exception) and r["paid"]}


def test_plain_post_is_paid_from_the_deposit_and_settled_in_batches(dstack: PaidStack) -> None:
    _, token, deposit_id = deposit_client(dstack)
    headers = {"X-Api-Key": token}
    with httpx.Client(base_url=dstack.coordinator.url, headers=headers, timeout=30) as http:
        # the product's exact body: no job_id, no max_price, no escrow
        first = submit(http, {"type": "inference", "model": "echo", "input": {"prompt": "Hello, AITBC!"}})
        assert first.status_code == 201, first.text
        job = first.json()
        assert job["job_id"].startswith("dj-") and job["payment"]["state"] == "reserved"
        done = wait_done(http, job["job_id"])
        assert done["state"] == "completed", done
        result = http.get(f"/api/v1/jobs/{job['job_id']}/result").json()
        assert "Hello, AITBC!" in result["output"]["text"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: submit(http, echo_job(f"deposit job {i}")), range(40)))
        assert all(a.status_code == 201 for a in answers), [a.text for a in answers if a.status_code != 201]
        ids = [job["job_id"], *(a.json()["job_id"] for a in answers)]
        for job_id in ids:
            assert wait_done(http, job_id)["state"] == "completed"

        with dstack.rpc() as rpc:
            paid = wait_until(lambda: (p := paid_jobs(rpc, ids)) and len(p) == len(ids) and p, 30, "all jobs paid")
            params = msgspec.convert(rpc.get_chain_info()["params"], ChainParams)
            charges = sum(compute_job_charge(p["paid_to_miner"], params) for p in paid.values())
            deposit, _ = rpc.get_verified_deposit(deposit_id)
            assert deposit is not None and deposit.balance == OPENING - charges and deposit.jobs_paid == len(ids)
            for job_id in ids[:3]:
                verified, _ = rpc.get_verified_paid_job(job_id)
                assert verified is not None and verified.deposit_id == deposit_id

        def settled_view() -> dict[str, Any] | None:
            body = http.get(f"/api/v1/jobs/{ids[-1]}").json()
            return body if body["payment"]["state"] == "settled" else None

        wait_until(settled_view, 20, "the coordinator to see the settlement")
        account = http.get("/api/v1/account").json()
        assert account["deposit_id"] == deposit_id and account["balance"] == OPENING - charges
        assert account["spent"] == charges and account["reserved"] == 0

        # a job dearer than what is available: 402 with both amounts, nothing reserved
        big = submit(http, echo_job("too dear", max_price=OPENING))
        assert big.status_code == 402, big.text
        error = big.json()["error"]
        assert error["reason"] == "insufficient_deposit" and error["needed"] > error["available"]
        assert http.get("/api/v1/account").json()["reserved"] == 0


def test_signed_mode_jobs_carry_the_clients_signature_to_the_chain(dstack: PaidStack, tmp_path: Path) -> None:
    """A signed-mode deposit pays only jobs its owner signed: without the signature, or with a wrong one,
    the job is refused (422) before anything is reserved; signed jobs run and the chain pays them (it
    checks the signature the settle batch carries); the CLI signs with --key by itself."""
    key, token, deposit_id = deposit_client(dstack, mode="signed")
    with httpx.Client(base_url=dstack.coordinator.url, headers={"X-Api-Key": token}, timeout=30) as http:
        account = http.get("/api/v1/account").json()
        assert account["mode"] == "signed" and account["deposit_id"] == deposit_id
        body = echo_job("signed job", max_price=500_000)
        unsigned = submit(http, body)
        assert unsigned.status_code == 422 and "signed mode" in unsigned.json()["error"]["message"], unsigned.text
        other = KeyPair.generate()
        by_other = submit(http, sign_deposit_job(body, {**account, "client": other.address}, other))
        assert by_other.status_code == 422 and "does not verify" in by_other.text, by_other.text
        signed = sign_deposit_job(body, account, key)
        dearer = submit(http, {**signed, "max_price": 500_001})  # not what the client signed
        assert dearer.status_code == 422 and "does not verify" in dearer.text, dearer.text
        other_prompt = submit(http, {**signed, "input": {"prompt": "something else"}})
        assert other_prompt.status_code == 422, other_prompt.text
        assert http.get("/api/v1/account").json()["reserved"] == 0

        first = submit(http, signed)
        assert first.status_code == 201, first.text
        assert first.json()["job_id"] == signed["job_id"] and first.json()["payment"]["state"] == "reserved"
        assert submit(http, signed).status_code == 409  # the same signed job twice: one job
        ids = [signed["job_id"]]
        for i in range(4):
            answer = submit(http, sign_deposit_job(echo_job(f"signed {i}", max_price=500_000), account, key))
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["job_id"])
        for job_id in ids:
            assert wait_done(http, job_id)["state"] == "completed"

    # The CLI signs a signed-mode deposit's job with --key.
    keyfile = tmp_path / "client.key"
    write_keyfile(keyfile, key)
    where = ["--coordinator", dstack.coordinator.url, "--api-key", token]
    ran = run_cli("job", "submit", "--prompt", "from the CLI", "--model", "echo", "--key", str(keyfile), *where)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    cli_job = next(w for w in ran.stdout.split() if w.startswith("dj-"))
    ids.append(cli_job)

    with dstack.rpc() as rpc:
        paid = wait_until(lambda: (p := paid_jobs(rpc, ids)) and len(p) == len(ids) and p, 60, "signed jobs paid")
        params = msgspec.convert(rpc.get_chain_info()["params"], ChainParams)
        charges = sum(compute_job_charge(p["paid_to_miner"], params) for p in paid.values())
        deposit, _ = rpc.get_verified_deposit(deposit_id)
        assert deposit is not None and deposit.balance == OPENING - charges and deposit.jobs_paid == len(ids)
        refused = [
            e
            for e in rpc.iter_job_events(dstack.coordinator.address)
            if e["kind"] == "settle_rejected" and e["job_id"] in ids
        ]
        assert refused == []


def test_key_without_deposit_still_needs_an_escrow(dstack: PaidStack) -> None:
    key = KeyPair.generate()
    token = dstack.coordinator.create_key_cli("--client", key.address)
    with httpx.Client(base_url=dstack.coordinator.url, headers={"X-Api-Key": token}, timeout=30) as http:
        answer = submit(http, echo_job())
        assert answer.status_code == 402 and answer.json()["error"]["reason"] == "escrow_missing"
        assert http.get("/api/v1/account").status_code == 402


def test_kill_9_mid_run_pays_every_completed_job_exactly_once(dstack: PaidStack) -> None:
    """Short default-suite variant of the 1,000-job run below."""
    run_kill_test(dstack, jobs=60)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_1000_deposit_jobs_with_the_coordinator_killed_mid_run(dstack: PaidStack) -> None:
    """1,000 deposit jobs; the coordinator is killed (-9) and restarted mid-run: every completed job paid
    exactly once, nothing for the rest, the deposit down by exactly the sum of price + protocol fee."""
    run_kill_test(dstack, jobs=1_000, opening=20 * OPENING)


def run_kill_test(stack: PaidStack, jobs: int, opening: int = OPENING) -> None:
    """Every job's worst case is reserved at once, so ``opening`` must cover the jobs in flight."""
    _, token, deposit_id = deposit_client(stack, opening)
    with stack.rpc() as rpc:
        miner_before = balance(rpc, stack.miner.address)
        pool_fee_params = msgspec.convert(rpc.get_chain_info()["params"], ChainParams)
    submitted: list[str] = []
    with httpx.Client(base_url=stack.coordinator.url, headers={"X-Api-Key": token}, timeout=30) as http:

        def post(i: int) -> str | None:
            try:
                answer = submit(http, echo_job(f"job {i}"))
            except httpx.HTTPError:
                return None
            return str(answer.json()["job_id"]) if answer.status_code == 201 else None

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            half = [j for j in pool.map(post, range(jobs // 2)) if j]
            submitted += half
            # kill -9 while jobs run and batches are in flight
            wait_until(lambda: _completed(stack, half) >= len(half) // 3, 60, "some jobs to complete")
            os.kill(stack.coordinator.proc.pid, 9)  # type: ignore[union-attr]
            stack.coordinator.proc.wait(10)  # type: ignore[union-attr]
            stack.coordinator.start(keep_port=True)
            stack.wait_miner_live()
            submitted += [j for j in pool.map(post, range(jobs // 2, jobs)) if j]
    assert len(submitted) >= jobs * 0.9
    check_paid_exactly_once(stack, token, deposit_id, submitted, opening, miner_before, pool_fee_params)


def test_jobs_answered_201_just_before_a_kill_9_all_survive(dstack: PaidStack) -> None:
    """A 201 is a promise: jobs accepted while more submissions are in flight, the coordinator then killed
    (-9), are all there after the restart (the intake log), run, and are paid exactly once."""
    client, token, deposit_id = deposit_client(dstack)
    with dstack.rpc() as rpc:
        miner_before = balance(rpc, dstack.miner.address)
        params = msgspec.convert(rpc.get_chain_info()["params"], ChainParams)
    accepted: list[str] = []
    killed, lock = threading.Event(), threading.Lock()
    limits = httpx.Limits(max_connections=32)  # 32 submissions in flight at the kill
    with httpx.Client(base_url=dstack.coordinator.url, headers={"X-Api-Key": token}, timeout=30, limits=limits) as http:

        def post(i: int) -> None:
            try:
                answer = submit(http, echo_job(f"in flight {i}"))
            except httpx.HTTPError:
                return
            if answer.status_code == 201:
                with lock:
                    accepted.append(str(answer.json()["job_id"]))
                    if len(accepted) == 40:  # at once, from here: rows of jobs just answered are still on their way
                        os.kill(dstack.coordinator.proc.pid, 9)  # type: ignore[union-attr]
                        killed.set()

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            posts = [pool.submit(post, i) for i in range(800)]
            assert killed.wait(60)
            dstack.coordinator.proc.wait(10)  # type: ignore[union-attr]
            concurrent.futures.wait(posts)
    dstack.coordinator.start(keep_port=True)
    dstack.wait_miner_live()
    stored = _jobs_of(dstack, client.address)
    assert set(accepted) <= stored, f"accepted with 201, then lost: {set(accepted) - stored}"
    # the others were accepted too, but their 201 died with the process: they run and are paid like the rest
    check_paid_exactly_once(dstack, token, deposit_id, sorted(stored), OPENING, miner_before, params)


def check_paid_exactly_once(
    stack: PaidStack,
    token: str,
    deposit_id: str,
    submitted: list[str],
    opening: int,
    miner_before: int,
    pool_fee_params: ChainParams,
) -> None:
    """Every accepted job ends; every completed one is paid exactly once on chain, nothing else is, and the
    deposit is down by exactly the charges."""
    with httpx.Client(base_url=stack.coordinator.url, headers={"X-Api-Key": token}, timeout=30) as http:
        states = {j: wait_done(http, j, timeout=120)["state"] for j in submitted}
        completed = [j for j, s in states.items() if s == "completed"]

        def all_settled() -> bool:
            views = [http.get(f"/api/v1/jobs/{j}").json()["payment"]["state"] for j in submitted]
            return all(v in ("settled", "released", "batch_refused") for v in views)

        wait_until(all_settled, 90, "every job's payment to close", interval=0.5)
    with stack.rpc() as rpc:
        paid = paid_jobs(rpc, submitted)
        # every completed job paid, exactly once (a paid id is one state entry; the events say how often)
        assert set(paid) == set(completed), (set(completed) - set(paid), set(paid) - set(completed))
        settled_events = [
            e for e in rpc.iter_job_events(stack.coordinator.address) if e["kind"] == "settled" and e["job_id"] in paid
        ]
        assert sorted(e["job_id"] for e in settled_events) == sorted(paid)
        charges = sum(compute_job_charge(p["paid_to_miner"], pool_fee_params) for p in paid.values())
        deposit, _ = rpc.get_verified_deposit(deposit_id)
        # the deposit's owner sent only its open_deposit tx (its fee came from the account, not the deposit)
        assert deposit is not None and deposit.balance == opening - charges
        assert balance(rpc, stack.miner.address) - miner_before >= sum(p["paid_to_miner"] for p in paid.values())


def _jobs_of(stack: PaidStack, client: str) -> set[str]:
    import sqlalchemy as sa

    from aitbc.coordinator.db.schema import jobs

    with stack.coordinator.engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(sa.select(jobs.c.id).where(jobs.c.client == client))}


def _completed(stack: PaidStack, ids: list[str]) -> int:
    with stack.coordinator.engine.connect() as conn:
        import sqlalchemy as sa

        from aitbc.coordinator.db.schema import jobs

        return int(
            conn.execute(sa.select(sa.func.count()).where(jobs.c.id.in_(ids), jobs.c.state == "completed")).scalar()
            or 0
        )
