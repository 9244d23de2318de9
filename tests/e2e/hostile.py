"""Helpers of the hostile-input suite: the services as real processes with short limits, raw-socket probes
and RSS readings. Every probe talks plain bytes over loopback so nothing in a client library softens it."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from support.ports import free_port

PYTHON = sys.executable
MiB = 1024 * 1024

# Short enough that the suite runs in seconds, long enough for a loaded 2-core machine.
IDLE_TIMEOUT_S = 1.5
HEADER_TIMEOUT_S = 1.5
MAX_CONNECTIONS = 600
WS_MAX_CONNECTIONS = 5
LIMITS = {
    "IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
    "HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "BODY_TIMEOUT_S": "3",
    "MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "LINGER_S": "1",
}


def clean_env(prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
    env |= {f"{prefix}{name}": value for name, value in LIMITS.items()}
    return env | {"COLUMNS": "250", "NO_COLOR": "1"} | extra


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Service:
    """One service process on a free loopback port; ``post_path`` is a POST route to aim bodies at."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    post_path: str
    rpc: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready: Path | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.log()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200 and (ready is None or ready.exists()):
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def healthy(self, timeout: float = 5.0) -> float:
        """Seconds ``/healthz`` took; fails if the process died or did not answer 200."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} died:\n{self.log()}"
        started = time.monotonic()
        reply = httpx.get(self.url + "/healthz", timeout=timeout)
        assert reply.status_code == 200, reply.text
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        value = orjson.loads(self.body)
        assert isinstance(value, dict)
        return value


def parse_reply(data: bytes) -> RawReply | None:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return RawReply(status, headers, rest[:length])


def stream_body(
    port: int, path: str, total: int, *, chunked: bool, headers: dict[str, str] | None = None, chunk: int = 256 * 1024
) -> tuple[RawReply | None, int]:
    """POST up to ``total`` bytes, reading as it goes; stops once the server answered or cut the
    connection. Returns the reply (None if none came) and how many body bytes were sent."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{framing}{extra}\r\n"
    piece = b"x" * chunk
    framed = (b"%x\r\n" % chunk + piece + b"\r\n") if chunked else piece
    received = b""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            deadline = time.monotonic() + 60
            pending = memoryview(framed)
            while time.monotonic() < deadline:
                for _key, events in sel.select(timeout=1.0):
                    if events & selectors.EVENT_READ:
                        try:
                            data = sock.recv(65536)
                        except (ConnectionResetError, BlockingIOError):
                            data = b""
                        received += data
                        reply = parse_reply(received)
                        if reply is not None:
                            return reply, sent
                        if not data:
                            return None, sent
                    if events & selectors.EVENT_WRITE and sent < total:
                        try:
                            n = sock.send(pending)
                        except BlockingIOError:
                            continue
                        except (BrokenPipeError, ConnectionResetError):
                            sel.modify(sock, selectors.EVENT_READ)
                            continue
                        pending = pending[n:]
                        if not pending:
                            sent += chunk
                            pending = memoryview(framed)
                    elif sent >= total:
                        sel.modify(sock, selectors.EVENT_READ)
    return parse_reply(received), sent


def hold_connections(port: int, idle: int, partial: int) -> list[socket.socket]:
    """``idle`` connections that send nothing and ``partial`` ones that send half a request line + header."""
    socks: list[socket.socket] = []
    for i in range(idle + partial):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        if i >= idle:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        socks.append(sock)
    return socks


def wait_all_closed(socks: list[socket.socket], within: float) -> tuple[int, float]:
    """Wait until the server closed every socket (EOF or reset); returns (still open, seconds waited)."""
    started = time.monotonic()
    open_socks = set(socks)
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        while open_socks and time.monotonic() - started < within:
            for key, _ in sel.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    while data := sock.recv(65536):
                        pass
                    closed = not data
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    sel.unregister(sock)
                    open_socks.discard(sock)
    for sock in socks:
        sock.close()
    return len(open_socks), time.monotonic() - started


@contextlib.contextmanager
def rss_growth(pid: int) -> Iterator[list[int]]:
    """Yields a list that receives the PEAK RSS growth (bytes) of ``pid`` during the block, sampled every 10 ms."""
    before = rss_bytes(pid)
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                peak[0] = max(peak[0], rss_bytes(pid))
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out: list[int] = []
    try:
        yield out
    finally:
        stop.set()
        sampler.join()
        out.append(max(peak[0], rss_bytes(pid)) - before)


def start_service(name: str, root: Path) -> Service:
    """``name`` (node, coordinator, poolhub, wallet) as a started process under ``root``, with short limits."""
    service = _service(name, root)
    service.start(ready=root / "wallet" / "daemon.token" if name == "wallet" else None)
    return service


def _service(name: str, root: Path) -> Service:
    port = free_port()
    data = root / name
    log = root / f"{name}.log"
    cli = [PYTHON, "-m", "aitbc"]
    if name == "node":
        init = subprocess.run(
            [*cli, "node", "init", "--data-dir", str(data), "--block-time-ms", "300"],
            capture_output=True,
            env=clean_env("AITBC_NODE_"),
            check=False,
        )
        assert init.returncode == 0, init.stderr
        ws, p2p = free_port(), free_port()
        args = [*cli, "node", "run", "--data-dir", str(data), "--rpc-port", str(port), "--ws-port", str(ws)]
        env = clean_env("AITBC_NODE_", AITBC_NODE_WS_MAX_CONNECTIONS=str(WS_MAX_CONNECTIONS))
        return Service(name, [*args, "--p2p-port", str(p2p)], env, log, port, "/", rpc=True)
    if name == "coordinator":
        args = [*cli, "coordinator", "run", "--data-dir", str(data), "--port", str(port), "--log-level", "warning"]
        return Service(name, args, clean_env("AITBC_COORDINATOR_"), log, port, "/api/v1/miners/register")
    if name == "poolhub":
        args = [*cli, "poolhub", "run", "--data-dir", str(data), "--port", str(port), "--api-token", "secret-token"]
        return Service(name, args, clean_env("AITBC_POOLHUB_"), log, port, "/v1/miners")
    args = [*cli, "wallet", "daemon", "--wallet-dir", str(data), "--port", str(port)]
    return Service(name, args, clean_env("AITBC_WALLETD_"), log, port, "/rpc", rpc=True)
