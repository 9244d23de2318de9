"""Fixtures that run the REAL node (``python -m aitbc node run``) and talk to it over loopback sockets.

Ports are always found by binding port 0 on 127.0.0.1 (several test runs may share
this machine); a start that loses the race for a port is retried with fresh ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import Transfer, sign_tx, tx_to_json_obj
from aitbc.runtime.keyfile import read_keyfile
from support.ports import free_ports

PYTHON = sys.executable
BLOCK_TIME_MS = 200
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
DEFAULT_FEE = 1_000


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: no AITBC_* settings leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
    return {**env, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb", **extra}


def run_cli(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m aitbc ARGS`` as a subprocess (wide terminal so rich does not wrap lines)."""
    full_env = clean_env(**(env or {}))
    return subprocess.run(
        [PYTHON, "-m", "aitbc", *args], capture_output=True, text=True, timeout=timeout, env=full_env, check=False
    )


class NodeDied(Exception):
    pass


@dataclass
class NodeProcess:
    """One ``aitbc node run`` process over a data directory it initialized with ``aitbc node init``."""

    data_dir: Path
    log_path: Path
    block_time_ms: int = BLOCK_TIME_MS
    rpc_port: int = 0
    ws_port: int = 0
    p2p_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    faucet: KeyPair = field(init=False)
    validator: KeyPair = field(init=False)
    chain_id: str = field(init=False, default="")
    starts: int = 0

    def init(self) -> None:
        result = run_cli("node", "init", "--data-dir", str(self.data_dir), "--block-time-ms", str(self.block_time_ms))
        assert result.returncode == 0, result.stderr + result.stdout
        self.faucet = read_keyfile(self.data_dir / "faucet.key")
        self.validator = read_keyfile(self.data_dir / "validator.key")

    # -- urls ---------------------------------------------------------------
    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    @property
    def faucet_key(self) -> KeyPair:
        """The funded genesis key (``DATA_DIR/faucet.key``)."""
        return self.faucet

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self, timeout: float = 30.0) -> NodeClient:
        return NodeClient(self.rpc_url, timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle ------------------------------------------------------------
    def start(self, *, keep_ports: bool = False) -> None:
        """Start the process and wait for ``/healthz``; retry with fresh ports if a port was taken meanwhile."""
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        last_error = ""
        for attempt in range(4):
            if not (keep_ports and attempt == 0 and self.rpc_port):
                self.rpc_port, self.ws_port, self.p2p_port = free_ports(3)
            self.starts += 1
            log_offset = len(self.log_text())
            with self.log_path.open("ab") as log:
                log.write(f"\n=== start #{self.starts} rpc={self.rpc_port} ws={self.ws_port} ===\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [
                        PYTHON,
                        "-m",
                        "aitbc",
                        "node",
                        "run",
                        "--data-dir",
                        str(self.data_dir),
                        "--rpc-port",
                        str(self.rpc_port),
                        "--ws-port",
                        str(self.ws_port),
                        "--p2p-port",
                        str(self.p2p_port),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=clean_env(),
                )
            try:
                self._wait_healthy()
                # Make sure the node answering is ours (not another run's that won a port race).
                info = httpx.post(
                    self.rpc_url, json={"jsonrpc": "2.0", "method": "get_chain_info", "id": 1}, timeout=5.0
                ).json()["result"]
                if info["authorities"] != [self.validator.address]:
                    self.kill()
                    raise NodeDied("another node answered on our port")
            except NodeDied as exc:
                last_error = str(exc)
                attempt_log = self.log_text()[log_offset:].lower()
                if "address already in use" in attempt_log or "another node" in last_error:
                    continue  # lost a port race with another process; try fresh ports
                raise AssertionError(last_error) from None
            self.chain_id = str(info["chain_id"])
            return
        raise AssertionError(f"node could not start: {last_error}")

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log_text()[-4000:]
                raise NodeDied(f"node exited with {self.proc.returncode} while starting; log:\n{log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"node not healthy after {START_TIMEOUT}s; log:\n{self.log_text()[-4000:]}")

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/healthz", timeout=5.0)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; return the exit code (fails the test if it does not exit)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"node ignored SIGTERM for {timeout}s; log:\n{self.log_text()[-4000:]}") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        """``kill -9``: no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, *, hard: bool = False) -> None:
        if hard:
            self.kill()
        else:
            code = self.stop()
            assert code == 0, f"node exited with {code} on SIGTERM; log:\n{self.log_text()[-4000:]}"
        self.start(keep_ports=True)

    def teardown(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return  # never started, or already stopped/killed by the test
        code = self.stop()
        assert code == 0, f"node exited with {code} on SIGTERM; log:\n{self.log_text()[-4000:]}"

    # -- helpers the test modules use (reached through the fixtures) -----------
    def transfer(
        self,
        sender: KeyPair,
        recipient: str,
        amount: int,
        nonce: int,
        fee: int = DEFAULT_FEE,
        memo: str = "",
        chain_id: str | None = None,
    ) -> Transfer:
        tx = Transfer(
            chain_id=chain_id or self.chain_id,
            sender=sender.address,
            nonce=nonce,
            fee=fee,
            recipient=recipient,
            amount=amount,
            memo=memo,
        )
        return sign_tx(tx, sender)

    def transfer_json(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return tx_to_json_obj(self.transfer(*args, **kwargs))

    @staticmethod
    def wait_for_height(client: NodeClient, height: int, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            head = client.get_head()
            if head["height"] >= height:
                return head
            assert time.monotonic() < deadline, f"height {height} not reached in {timeout}s (at {head['height']})"
            time.sleep(0.05)

    @staticmethod
    def wait_committed(client: NodeClient, tx_hashes: list[str], timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """Wait until every tx is committed; return their statuses (fails on a rejected tx)."""
        deadline = time.monotonic() + timeout
        statuses: dict[str, dict[str, Any]] = {}
        remaining = list(tx_hashes)
        while remaining:
            replies = client.batch([("get_tx_status", [h]) for h in remaining])
            still = []
            for tx_hash, status in zip(remaining, replies, strict=True):
                assert isinstance(status, dict), status
                assert status["status"] != "rejected", status
                if status["status"] == "committed":
                    statuses[tx_hash] = status
                else:
                    still.append(tx_hash)
            remaining = still
            if remaining:
                assert time.monotonic() < deadline, f"{len(remaining)} txs not committed after {timeout}s"
                time.sleep(0.05)
        return statuses

    def fund(self, client: NodeClient, amounts: dict[str, int]) -> None:
        """Send faucet transfers to each address and wait until they are committed."""
        nonce = client.next_nonce(self.faucet.address)
        hashes = [
            client.send_tx(self.transfer(self.faucet, address, amount, nonce + i))
            for i, (address, amount) in enumerate(amounts.items())
        ]
        self.wait_committed(client, hashes)


NodeFactory = Callable[..., NodeProcess]


def _launch(base: Path, name: str, block_time_ms: int) -> NodeProcess:
    base.mkdir(parents=True, exist_ok=True)
    node = NodeProcess(data_dir=base / name, log_path=base / f"{name}.log", block_time_ms=block_time_ms)
    node.init()
    node.start()
    return node


@pytest.fixture
def node_process(tmp_path: Path) -> Iterator[NodeFactory]:
    """Factory: ``node_process()`` inits a data dir under tmp_path and starts a node on free ports."""
    started: list[NodeProcess] = []

    def make(name: str = "node", block_time_ms: int = BLOCK_TIME_MS) -> NodeProcess:
        node = _launch(tmp_path, f"{name}{len(started)}", block_time_ms)
        started.append(node)
        return node

    yield make
    errors = []
    for node in started:
        try:
            node.teardown()
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="session")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node for every test that only needs *a* node (tests take the faucet's pending nonce, so they can share).

    Starting a node costs an interpreter start-up and imports; sharing one keeps the suite fast.
    """
    node = _launch(tmp_path_factory.mktemp("node"), "node", BLOCK_TIME_MS)
    yield node
    node.teardown()


@pytest.fixture
def client(shared_node: NodeProcess) -> Iterator[NodeClient]:
    with shared_node.client() as c:
        yield c
