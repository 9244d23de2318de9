"""Real validator processes on 127.0.0.1, looked at from the wire.

* Item 10: two validators talk through a recording relay: the bytes on the socket hold no tx, vote or block
  bytes (raw or hex); one bit flipped in transit ends the connection (the receiver counts the refused
  frame) and the chain carries on over a fresh session.
* Item 4: eight unauthenticated connections that each announce a 32 MiB first frame (in the old framing
  and inside an encrypted session) raise the node's memory by less than 16 MiB.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aitbc.client.node import NodeClient
from aitbc.devnet.network import ValidatorNetwork, ValidatorProcess
from aitbc.node.secret import derive_session_keys, new_ephemeral
from aitbc.protocol.tx import Transfer, sign_tx
from aitbc.runtime.keyfile import read_keyfile
from support.ports import free_ports as _free_ports

TIMEOUT_ARGS = ["--timeout-propose-ms", "600", "--timeout-vote-ms", "300", "--timeout-delta-ms", "300"]


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def metric(node: ValidatorProcess, name: str) -> float:
    text = httpx.get(f"http://{node.host}:{node.rpc_port}/metrics", timeout=3.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


class Relay:
    """A TCP relay that records every byte it forwards and can flip one bit of the next chunk."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.captured = bytearray()
        self.lock = threading.Lock()
        self.tamper = threading.Event()
        self.tampered = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, may_tamper: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                with self.lock:
                    self.captured.extend(data)
                if may_tamper and self.tamper.is_set() and len(data) > 64:
                    self.tamper.clear()
                    self.tampered += 1
                    data = data[:-1] + bytes([data[-1] ^ 0x01])
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.stopping = True
        self.server.close()


@pytest.fixture
def two_validators(tmp_path: Path) -> Iterator[tuple[ValidatorNetwork, Relay]]:
    ports = _free_ports(6)
    net = ValidatorNetwork(
        tmp_path,
        2,
        ports=[(ports[0], ports[1], ports[2]), (ports[3], ports[4], ports[5])],
        extra_args=[*TIMEOUT_ARGS, "--log-level", "warning"],
    )
    net.prepare(block_time_ms=300)
    relay = Relay(net.nodes[1].p2p_port)
    net.nodes[0].peers = [f"127.0.0.1:{relay.port}"]  # the only connection goes through the relay
    net.nodes[1].peers = []
    try:
        net.start()
        yield net, relay
    finally:
        net.stop()
        relay.close()


def test_item10_p2p_bytes_hold_no_plaintext_and_an_altered_frame_is_refused(
    two_validators: tuple[ValidatorNetwork, Relay],
) -> None:
    net, relay = two_validators
    a, b = net.nodes
    faucet = read_keyfile(a.data_dir / "faucet.key")
    recipient = read_keyfile(b.data_dir / "validator.key").address
    with NodeClient(a.rpc_url, timeout=5.0) as client, NodeClient(b.rpc_url, timeout=5.0) as other:
        chain_id = client.get_chain_info()["chain_id"]
        tx = sign_tx(
            Transfer(chain_id=chain_id, sender=faucet.address, nonce=0, fee=1_000, recipient=recipient, amount=7),
            faucet,
        )
        tx_hash = client.send_tx(tx)
        status = other.wait_for_tx(tx_hash, timeout=30.0)  # gossiped, proposed, voted, committed: all via relay
        assert status["status"] == "committed"
        block = other.get_block(int(status["height"]), include_txs=True)
    with relay.lock:
        wire = bytes(relay.captured)
    assert len(wire) > 2_000  # the tx, its proposal and the votes crossed this socket (volume varies with timing)
    secrets: list[bytes] = [tx.signature.encode(), bytes.fromhex(tx.signature), chain_id.encode()]
    secrets += [block["hash"].encode(), bytes.fromhex(block["hash"])]
    secrets += [faucet.address.encode(), recipient.encode()]
    for sig in block["commit"]["signatures"]:  # the precommits of the tx's block: votes on the wire
        secrets += [sig["signature"].encode(), bytes.fromhex(sig["signature"])]
    secrets.append(block["proposer_signature"].encode())
    leaked = [s[:16] for s in secrets if s in wire]
    assert not leaked, f"plaintext on the wire: {leaked}"
    # a bit flipped in transit: the receiver refuses the frame and drops the session; a new one carries on
    refused = metric(b, "aitbc_p2p_frames_refused_total")
    height = int(NodeClient(b.rpc_url).get_head()["height"])
    relay.tamper.set()
    wait_until("the altered frame refused", lambda: metric(b, "aitbc_p2p_frames_refused_total") >= refused + 1, 30)
    assert relay.tampered == 1
    wait_until("blocks after the new session", lambda: int(NodeClient(b.rpc_url).get_head()["height"]) > height + 3)


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _flood(port: int, encrypted: bool, results: list[int]) -> None:
    """Open a connection, announce a 32 MiB first frame and send as much of it as the node reads."""
    sent = 0
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        if encrypted:
            secret, public = new_ephemeral()
            s.sendall(public)
            theirs = s.recv(32)
            derive_session_keys(secret, public, theirs)
        s.sendall((32 * 1024 * 1024).to_bytes(4, "big"))
        chunk = os.urandom(1 << 20)
        for _ in range(32):
            s.sendall(chunk)
            sent += len(chunk)
    results.append(sent)


def test_item4_unauthenticated_32mib_first_frames_do_not_pin_memory(tmp_path: Path) -> None:
    ports = _free_ports(3)
    net = ValidatorNetwork(
        tmp_path, 4, ports=[(ports[0], ports[1], ports[2])] * 1, extra_args=["--log-level", "warning"]
    )
    net.prepare(block_time_ms=300)
    node = net.nodes[0]
    node.peers = []
    try:
        node.start()
        node.wait_healthy(30)
        assert node.proc is not None
        pid = node.proc.pid
        time.sleep(1.0)
        before = _rss_kib(pid)
        results: list[int] = []
        threads = [
            threading.Thread(target=_flood, args=(node.p2p_port, i % 2 == 1, results), daemon=True) for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        time.sleep(0.5)
        grown_mib = (_rss_kib(pid, "VmHWM") - before) / 1024
        assert grown_mib < 16, f"memory grew by {grown_mib:.1f} MiB"
        assert max(results) < 8 * 1024 * 1024, "the node kept reading an unauthenticated 32 MiB frame"
        with NodeClient(node.rpc_url, timeout=3.0) as client:
            assert client.get_head()["height"] == 0  # still serving
    finally:
        node.stop()
