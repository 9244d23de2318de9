"""A local network of validator processes: start, stop, ``kill -9``, pause (SIGSTOP), disconnect.

Used by ``aitbc devnet up --validators N``, the perturbation harness (tests/e2e)
and ``bench/consensus.py``. Validator ``i`` lives in ``BASE/node{i}`` and
listens on ``rpc_port + 10·i`` (RPC), ``+1`` (WebSocket), ``+2`` (p2p) unless
ports are given; every validator dials every other one. "Disconnect" creates
``node{i}/p2p.blocked``, which makes that node drop all p2p traffic until the
file is removed (no firewall rules needed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from aitbc.devnet.process import BATCH_NICE
from aitbc.node.init import init_validator_network
from aitbc.protocol.errors import ConfigError
from aitbc.runtime.priority import lower_process


@dataclass
class ValidatorProcess:
    index: int
    data_dir: Path
    host: str
    rpc_port: int
    ws_port: int
    p2p_port: int
    peers: list[str]
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Environment set on purpose (e.g. ``AITBC_NODE_CORS_ORIGINS``); every other ``AITBC_*`` is dropped."""
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.rpc_port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/ws"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "aitbc",
            "node",
            "run",
            "--data-dir",
            str(self.data_dir),
            "--host",
            self.host,
            "--rpc-port",
            str(self.rpc_port),
            "--ws-port",
            str(self.ws_port),
            "--p2p-port",
            str(self.p2p_port),
            *(a for peer in self.peers for a in ("--peer", peer)),
            *self.extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | self.env
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        lower_process(self.proc.pid, BATCH_NICE)
        self.paused = False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ConfigError(f"validator {self.index} exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.host}:{self.rpc_port}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise ConfigError(f"validator {self.index} not healthy within {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        if not self.running:
            return
        assert self.proc is not None
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """``kill -9``: no chance to flush or say goodbye."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
        self.paused = False

    def pause(self) -> None:
        if self.running and not self.paused:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running and self.paused:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False

    @property
    def block_file(self) -> Path:
        return self.data_dir / "p2p.blocked"

    def disconnect(self) -> None:
        self.block_file.touch()

    def reconnect(self) -> None:
        self.block_file.unlink(missing_ok=True)


@dataclass
class ValidatorNetwork:
    base_dir: Path
    size: int
    host: str = "127.0.0.1"
    rpc_port: int = 9080
    ports: list[tuple[int, int, int]] | None = None
    """(rpc, ws, p2p) per validator; default: ``rpc_port + 10·i`` and the next two."""
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Passed to every validator process (``ValidatorProcess.env``)."""
    nodes: list[ValidatorProcess] = field(default_factory=list)

    def node_dir(self, index: int) -> Path:
        return self.base_dir / f"node{index}"

    def prepare(self, *, block_time_ms: int | None = None, extra_balances: dict[str, int] | None = None) -> bool:
        """Create the validators' directories on first use; True if this call created them."""
        created = False
        if not (self.node_dir(0) / "genesis.json").exists():
            init_validator_network(self.base_dir, self.size, block_time_ms=block_time_ms, extra_balances=extra_balances)
            created = True
        ports = self.ports or [
            (self.rpc_port + 10 * i, self.rpc_port + 10 * i + 1, self.rpc_port + 10 * i + 2) for i in range(self.size)
        ]
        self.nodes = []
        for i, (rpc, ws, p2p) in enumerate(ports):
            peers = [f"{self.host}:{p[2]}" for j, p in enumerate(ports) if j != i]
            self.nodes.append(
                ValidatorProcess(
                    i,
                    self.node_dir(i),
                    self.host,
                    rpc,
                    ws,
                    p2p,
                    peers,
                    self.base_dir / "logs" / f"node{i}.log",
                    list(self.extra_args),
                    dict(self.env),
                )
            )
        for node in self.nodes:
            node.reconnect()  # a stale block file from a killed harness must not isolate a node
        return created

    def start(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_healthy(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.reconnect()
            node.stop()
