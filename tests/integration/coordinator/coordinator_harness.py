"""Helpers that run the REAL coordinator and REAL miner processes and talk to them over loopback HTTP.

- ``CoordinatorProcess``: ``python -m aitbc coordinator run --data-dir D --port 0 --lease-seconds L
  [--database-url URL]``: the coordinator picks its port and announces it (``AITBC_COORDINATOR_ANNOUNCE_FILE``,
  read with ``support.ports.wait_for_announcement``); a restart asks for the same port again;
  API keys come from ``python -m aitbc coordinator keys create`` (last stdout line), or, where a test
  needs many throwaway keys, are inserted into the coordinator's store the same way that command does.
- ``MinerProcess``: ``python -m aitbc miner run --coordinator URL --backend echo --data-dir M``; a
  region label lets a test route its jobs to its own (slow) miners on a shared coordinator.
- ``FakeMiner``: a hand-rolled miner client (signed requests with ``sign_miner_request`` + httpx), to
  drive the miner API exactly: claim and stay silent, send stale, forged, replayed or wrong reports.

``shared_stack`` (session) is one SQLite coordinator with two instant echo miners; tests that must
count things use their own API key (``stack.new_key()``) or unique model names. ``db_stack`` (in
test_coordinator_databases.py) runs the same stack on SQLite and on a throwaway PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import sqlalchemy as sa

from aitbc.client.coordinator import CoordinatorClient
from aitbc.coordinator.auth import new_api_key
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.coordinator.db.schema import jobs, receipts
from aitbc.protocol.auth import sign_miner_request
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.job import JobOutput, compute_output_hash
from aitbc.protocol.receipt import (
    Receipt,
    ReceiptExpectation,
    ReceiptUnits,
    compute_total_price,
    sign_receipt_as_miner,
    verify_receipt,
)
from aitbc.runtime.keyfile import write_keyfile
from support.ports import wait_for_announcement

PYTHON = sys.executable
START_TIMEOUT = 45.0
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
SHARED_LEASE_SECONDS = 2.0


def cli_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def run_cli(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "aitbc", *args], capture_output=True, text=True, timeout=timeout, env=cli_env(), check=False
    )


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def expect(response: httpx.Response, status: int = 200) -> httpx.Response:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    return response


def now_ms() -> int:
    return int(time.time() * 1000)


# -- processes -------------------------------------------------------------------------------


@dataclass
class CoordinatorProcess:
    data_dir: Path
    lease_seconds: float = SHARED_LEASE_SECONDS
    database_url: str | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    chain_id: str = "aitbc-devnet"
    extra_args: list[str] = field(default_factory=list)
    address: str = ""
    node_url: str | None = None
    """Paid mode: the node jobs are paid through (``--node-url``)."""
    log_level: str = "warning"
    _engine: sa.Engine | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'coordinator.db'}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def start(self, *, keep_port: bool = False) -> None:
        """Start on a port the coordinator picks (port 0, read back from its announcement), or restart
        (``keep_port``: the previous port first, where the miners look for it)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        announce_file = self.data_dir / "announce.json"
        last = ""
        for attempt in range(2):
            port = self.port if keep_port and attempt == 0 and self.port else 0
            announce_file.unlink(missing_ok=True)
            args = [
                PYTHON, "-m", "aitbc", "coordinator", "run", "--data-dir", str(self.data_dir), "--port", str(port),
                "--lease-seconds", str(self.lease_seconds), "--log-level", self.log_level,
            ]  # fmt: skip
            if self.database_url:
                args += ["--database-url", self.database_url]
            if self.node_url:
                args += ["--node-url", self.node_url, "--chain-id", self.chain_id]
            args += self.extra_args
            env = {**cli_env(), "AITBC_COORDINATOR_ANNOUNCE_FILE": str(announce_file)}
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
            with contextlib.suppress(AssertionError):
                self.port = int(wait_for_announcement(announce_file, self.proc, START_TIMEOUT)["port"])
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    health = httpx.get(self.url + "/healthz", timeout=2.0).json()
                    self.chain_id = health["chain_id"]
                    self.address = health["coordinator"]
                    return
                time.sleep(0.1)
            last = self.log_text()
            self.stop()
            if "address already in use" not in last.lower() and "error while attempting to bind" not in last.lower():
                break
        raise RuntimeError(f"coordinator did not start:\n{last}")

    def ensure_running(self) -> None:
        if not self.running:
            self.start(keep_port=True)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.url + "/healthz", timeout=10.0).json()
        return result

    def create_key_cli(self, *extra: str) -> str:
        """``aitbc coordinator keys create``; the key is the last line of stdout."""
        args = ["coordinator", "keys", "create", "--data-dir", str(self.data_dir), *extra]
        if self.database_url:
            args += ["--database-url", self.database_url]
        result = run_cli(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        token = result.stdout.strip().splitlines()[-1].strip()
        assert token.startswith("aitbc_"), result.stdout
        return token

    # -- direct looks at the store (the ground truth, independent of the API) ----------------
    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.db_url, poolclass=sa.pool.NullPool)
        return self._engine

    def insert_key(self, rate: float = 1000.0, burst: int = 1000) -> str:
        """A fresh API key, stored exactly as ``keys create`` stores it (the coordinator loads it on first use)."""
        token, row = new_api_key(f"test-{uuid.uuid4().hex[:6]}", None, rate, burst)
        CoordinatorRepo(self.engine).insert_api_key(row)
        return token

    def db_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "jobs": int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()),
                "receipts": int(conn.execute(sa.select(sa.func.count()).select_from(receipts)).scalar_one()),
            }

    def db_job(self, job_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        assert row is not None, f"no row for {job_id}"
        return dict(row)

    def db_receipts(self, job_ids: list[str] | None = None) -> list[dict[str, Any]]:
        query = sa.select(receipts)
        if job_ids is not None:
            query = query.where(receipts.c.job_id.in_(job_ids))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def miner_registered(self, address: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.text("SELECT 1 FROM miners WHERE address = :a"), {"a": address}).first() is not None

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@dataclass
class MinerProcess:
    coordinator: CoordinatorProcess
    data_dir: Path
    token_delay: float = 0.0
    region: str = ""
    proc: subprocess.Popen[bytes] | None = None
    key: KeyPair = field(default_factory=KeyPair.generate)
    price: int = 1
    """Base units per token."""
    extra_args: tuple[str, ...] = ()
    """More ``aitbc miner run`` options (e.g. ``--zk-inference``)."""

    @property
    def address(self) -> str:
        return self.key.address

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.data_dir / "miner.key"
        if not key_path.exists():
            write_keyfile(key_path, self.key)
        args = [
            PYTHON, "-m", "aitbc", "miner", "run", "--coordinator", self.coordinator.url, "--backend", "echo",
            "--data-dir", str(self.data_dir), "--log-level", "info",
        ]  # fmt: skip
        if self.token_delay:
            args += ["--echo-token-delay", str(self.token_delay)]
        if self.region:
            args += ["--region", self.region]
        if self.price != 1:
            args += ["--price", str(self.price), "--base-units"]
        args += list(self.extra_args)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=cli_env())

    def wait_registered(self, timeout: float = START_TIMEOUT) -> None:
        def registered() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"miner exited with {self.proc.returncode}:\n{self.log_text()}")
            return self.coordinator.miner_registered(self.address)

        wait_until(registered, timeout, f"miner {self.address} to register", interval=0.1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


# -- a hand-rolled miner client ------------------------------------------------------------------


class FakeMiner:
    """Signed calls to the miner API, one by one, so tests control exactly what a miner says and when."""

    def __init__(self, coordinator: CoordinatorProcess, key: KeyPair | None = None) -> None:
        self.coordinator = coordinator
        self.key = key or KeyPair.generate()
        self.http = httpx.Client(base_url=coordinator.url, timeout=30.0)

    @property
    def address(self) -> str:
        return self.key.address

    def close(self) -> None:
        self.http.close()

    def sign(self, path: str, payload: dict[str, Any], key: KeyPair | None = None) -> tuple[dict[str, str], bytes]:
        body = orjson.dumps(payload)
        headers = sign_miner_request(key or self.key, self.coordinator.chain_id, "POST", path, body, now_ms())
        headers["Content-Type"] = "application/json"
        return headers, body

    def send(self, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return self.http.post(path, content=body, headers=headers)

    def post(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        headers, body = self.sign(path, payload)
        return self.send(path, headers, body)

    def register(self, models: list[dict[str, Any]], **extra: Any) -> httpx.Response:
        payload = {"models": models, "backend": "fake", "hardware": {"kind": "cpu"}, **extra}
        response = self.post("/api/v1/miners/register", payload)
        assert response.status_code == 200, response.text
        return response

    def claim(self, wait: float = 0.0) -> dict[str, Any] | None:
        response = self.post("/api/v1/miners/claim", {"wait_seconds": wait})
        assert response.status_code in (200, 204), response.text
        return None if response.status_code == 204 else dict(response.json())

    def progress(self, job_id: str, lease_id: str, tokens: list[str] | None = None, first: int = 0) -> httpx.Response:
        return self.post(
            f"/api/v1/miners/jobs/{job_id}/progress",
            {"lease_id": lease_id, "tokens": tokens or [], "first_index": first},
        )

    def result(self, job_id: str, lease_id: str, output: dict[str, Any], receipt: dict[str, Any]) -> httpx.Response:
        return self.post(
            f"/api/v1/miners/jobs/{job_id}/result", {"lease_id": lease_id, "output": output, "receipt": receipt}
        )

    def release(self, job_id: str, lease_id: str) -> httpx.Response:
        return self.post(f"/api/v1/miners/jobs/{job_id}/release", {"lease_id": lease_id})

    def build_result(
        self,
        claim: dict[str, Any],
        text: str = "fake output",
        *,
        signer: KeyPair | None = None,
        output_text: str | None = None,
        units: ReceiptUnits | None = None,
        **changes: Any,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A (output, receipt) pair for a claimed job, correct unless told otherwise: ``changes`` override
        receipt fields, ``signer`` signs in the miner's place, ``output_text`` delivers other text than
        the receipt's hash covers; the total always stays units x price."""
        job = claim["job"]
        receipt_output = JobOutput(text=text)
        units = units or ReceiptUnits(prompt_tokens=3, completion_tokens=2, compute_ms=5)
        started = job["assigned_at_ms"]
        finished = max(now_ms(), started + 20)  # >= the default compute time; well within the clock-skew allowance
        fields: dict[str, Any] = {
            "chain_id": job["chain_id"],
            "job_id": job["job_id"],
            "miner": self.address,
            "client": job["client"],
            "coordinator": job["coordinator"],
            "model": job["model"],
            "model_digest": job["model_digest"],
            "input_hash": job["input_hash"],
            "output_hash": compute_output_hash(receipt_output),
            "units": units,
            "unit_price": job["unit_price"],
            "total_price": compute_total_price(units, job["unit_price"]),
            "started_at_ms": started,
            "finished_at_ms": finished,
        }
        fields.update(changes)
        receipt = sign_receipt_as_miner(Receipt(**fields), signer or self.key)
        delivered = JobOutput(text=text if output_text is None else output_text)
        return msgspec.to_builtins(delivered), msgspec.to_builtins(receipt)


def fake_model(kind: str = "text", price: int = 1, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or f"fake-{uuid.uuid4().hex[:10]}",
        "digest": "sha256:" + uuid.uuid4().hex * 2,
        "kind": kind,
        "unit_price": price,
    }


# -- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    coordinator: CoordinatorProcess
    api_key: str
    miners: list[MinerProcess]
    base: Path
    _fakes: list[FakeMiner] = field(default_factory=list)
    _extra_miners: list[MinerProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.coordinator.url

    def client(self, api_key: str | None = None) -> CoordinatorClient:
        return CoordinatorClient(self.url, api_key or self.api_key, timeout=30.0)

    def http(self, api_key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-Api-Key": api_key or self.api_key}, timeout=30.0)

    def new_key(self, rate: float = 1000.0, burst: int = 1000) -> str:
        return self.coordinator.insert_key(rate, burst)

    def fake_miner(self, models: list[dict[str, Any]] | None = None, **extra: Any) -> FakeMiner:
        fake = FakeMiner(self.coordinator)
        if models is not None:
            fake.register(models, **extra)
        self._fakes.append(fake)
        return fake

    def add_miner(self, token_delay: float = 0.0, region: str = "") -> MinerProcess:
        miner = MinerProcess(
            self.coordinator, self.base / f"miner-{uuid.uuid4().hex[:6]}", token_delay=token_delay, region=region
        )
        self._extra_miners.append(miner)
        return miner

    def cleanup_test_objects(self) -> None:
        for fake in self._fakes:
            fake.close()
        self._fakes.clear()
        for miner in self._extra_miners:
            if miner.running:
                miner.proc.kill()  # type: ignore[union-attr]
                miner.proc.wait(timeout=10)  # type: ignore[union-attr]
        self._extra_miners.clear()

    def stop(self) -> None:
        self.cleanup_test_objects()
        for miner in self.miners:
            miner.stop()
        self.coordinator.stop()
        self.coordinator.dispose()

    def diagnostics(self) -> str:
        parts = [f"--- coordinator log ---\n{self.coordinator.log_text()}"]
        for miner in [*self.miners, *self._extra_miners]:
            parts.append(f"--- miner {miner.address} log ---\n{miner.log_text()}")
        return "\n".join(parts)


def launch_stack(base: Path, miners: int = 2, *, lease_seconds: float, database_url: str | None = None,
                 token_delay: float = 0.0) -> Stack:  # fmt: skip
    coordinator = CoordinatorProcess(base / "coordinator", lease_seconds=lease_seconds, database_url=database_url)
    coordinator.start()
    miner_procs = [MinerProcess(coordinator, base / f"miner{i}", token_delay=token_delay) for i in range(miners)]
    for miner in miner_procs:
        miner.start()
    # The CLI key is created while the miners start (the coordinator already migrated the store).
    api_key = coordinator.create_key_cli("--name", "tests")
    for miner in miner_procs:
        miner.wait_registered()
    return Stack(coordinator, api_key, miner_procs, base)


def launch_replicas(base: Path, count: int, database_url: str, **settings: Any) -> list[CoordinatorProcess]:
    """``count`` coordinator replicas on one PostgreSQL: each its own data dir and port, all with the first
    one's key (replicas are one coordinator to miners, clients and the chain)."""
    first = CoordinatorProcess(base / "replica0", database_url=database_url, **settings)
    first.start()
    replicas = [first]
    for i in range(1, count):
        replica = CoordinatorProcess(base / f"replica{i}", database_url=database_url, **settings)
        replica.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(first.data_dir / "coordinator.key", replica.data_dir / "coordinator.key")
        replica.start()
        assert replica.address == first.address
        replicas.append(replica)
    return replicas


# -- helpers for the tests -------------------------------------------------------------------------


def submit(http: httpx.Client, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = http.post("/api/v1/jobs", json=body)
    assert response.status_code == status, response.text
    return dict(response.json())


def echo_job(prompt: str = "Hello, AITBC!", **extra: Any) -> dict[str, Any]:
    return {"type": "inference", "model": "echo", "input": {"prompt": prompt}, **extra}


def wait_state(http: httpx.Client, job_id: str, states: set[str] | str, timeout: float = 20.0) -> dict[str, Any]:
    wanted = {states} if isinstance(states, str) else states

    def reached() -> dict[str, Any] | None:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] in wanted else None

    result: dict[str, Any] = wait_until(reached, timeout, f"job {job_id} to reach {sorted(wanted)}")
    return result


def wait_done(http: httpx.Client, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    return wait_state(http, job_id, set(TERMINAL), timeout)


def wait_for_tokens(stack: Stack, job_id: str, count: int) -> None:
    """Block until the job's event stream has delivered ``count`` generated tokens (the generation is under way)."""
    seen = 0
    with stack.client() as client:
        for event, _ in client.events(job_id, timeout=30.0):
            if event == "token":
                seen += 1
                if seen >= count:
                    return
    raise AssertionError(f"job {job_id} ended after {seen} tokens, before {count}")


def check_receipt(stack_or_coordinator: Stack | CoordinatorProcess, http: httpx.Client, job_id: str) -> dict[str, Any]:
    """Fetch the job's receipt and verify it with ``verify_receipt``, countersignature required."""
    coordinator = stack_or_coordinator if isinstance(stack_or_coordinator, CoordinatorProcess) else (
        stack_or_coordinator.coordinator
    )  # fmt: skip
    job = http.get(f"/api/v1/jobs/{job_id}").json()
    result = http.get(f"/api/v1/jobs/{job_id}/result")
    assert result.status_code == 200, result.text
    body = result.json()
    served = http.get(f"/api/v1/jobs/{job_id}/receipt")
    assert served.status_code == 200, served.text
    receipt = msgspec.convert(served.json()["receipt"], Receipt)
    if "text" in body["output"]:
        output = JobOutput(text=body["output"]["text"])
    else:
        from aitbc.protocol.job import pack_vectors

        dims, packed = pack_vectors(body["output"]["embeddings"])
        output = JobOutput(dimensions=dims, vectors_f32=packed)
    verify_receipt(
        receipt,
        ReceiptExpectation(
            chain_id=coordinator.chain_id,  # both as /healthz reported them at start
            job_id=job_id,
            miner=job["miner"],
            client=job["client"],
            coordinator=coordinator.address,
            model=job["model"],
            model_digest=job["model_digest"],
            input_hash=job["input_hash"],
            output_hash=compute_output_hash(output),
            max_total_price=job["max_price"],
            earliest_start_ms=job["assigned_at_ms"],
            latest_finish_ms=job["finished_at_ms"],
            require_coordinator_signature=True,
        ),
    )
    assert body["receipt_hash"] == served.json()["receipt_hash"]
    return {"job": job, "result": body, "receipt": receipt}
