"""WebSocket push (port --ws-port, path /ws) against a real node process."""

from __future__ import annotations

import base64
import itertools
import os
import re
import socket
import struct
import threading
import time
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import tx_to_json_obj

BLOCK_TIME = 0.2


def ws(node: Any) -> ClientConnection:
    return connect(node.ws_url, open_timeout=10, proxy=None, close_timeout=2)


def send(conn: ClientConnection, message: Any) -> None:
    conn.send(orjson.dumps(message).decode() if not isinstance(message, str | bytes) else message)


def recv(conn: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(conn.recv(timeout=timeout))
    return message


def reply_to(conn: ClientConnection, id_: Any, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Read until the reply with ``id_``; events read on the way are appended to ``events``."""
    deadline = time.monotonic() + 5
    while True:
        message = recv(conn, timeout=max(0.1, deadline - time.monotonic()))
        if "seq" in message:
            if events is not None:
                events.append(message)
            continue
        assert message.get("id") == id_, message
        return message


def subscribe(conn: ClientConnection, topics: list[str], id_: Any = 1, method: str = "subscribe") -> dict[str, Any]:
    send(conn, {"method": method, "params": topics, "id": id_})
    return reply_to(conn, id_)


def test_subscribe_receives_blocks_and_txs_in_seq_order(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    with ws(node) as conn:
        ack = subscribe(conn, ["new_blocks", "new_txs"], id_="s1")
        assert ack == {"id": "s1", "result": {"subscribed": ["new_blocks", "new_txs"]}}
        nonce = client.next_nonce(node.faucet.address)
        txs = [node.transfer(node.faucet, KeyPair.generate().address, 7, nonce + i) for i in range(5)]
        hashes = [client.send_tx(tx) for tx in txs]
        statuses = node.wait_committed(client, hashes)
        last_height = max(s["height"] for s in statuses.values())

        events: list[dict[str, Any]] = []
        seen_txs: set[str] = set()
        deadline = time.monotonic() + 10
        while not (seen_txs >= set(hashes) and any(e["params"].get("height", -1) >= last_height + 1 for e in events)):
            assert time.monotonic() < deadline, f"events missing; got {events}"
            event = recv(conn)
            events.append(event)
            if event["method"] == "new_txs":
                seen_txs.update(t["hash"] for t in event["params"]["txs"])

    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    blocks = [e["params"] for e in events if e["method"] == "new_blocks"]
    assert len(blocks) >= 2
    for before, after in itertools.pairwise(blocks):
        assert after["height"] == before["height"] + 1
        assert after["prev_hash"] == before["hash"]
    for block in blocks:
        stored = client.get_block(block["height"], False)
        assert len(stored.pop("proposer_signature")) == 128
        assert block == stored
    tx_events = [t for e in events if e["method"] == "new_txs" for t in e["params"]["txs"]]
    by_hash = {t["hash"]: t for t in tx_events}
    for tx, tx_hash in zip(txs, hashes, strict=True):
        assert by_hash[tx_hash] == {**by_hash[tx_hash], "sender": tx.sender, "nonce": tx.nonce, "fee": tx.fee}
    committed_in = {statuses[h]["height"] for h in hashes}
    assert committed_in <= {b["height"] for b in blocks}
    assert sum(b["tx_count"] for b in blocks if b["height"] in committed_in) >= len(hashes)


def test_unsubscribe_stops_events(shared_node: Any, client: NodeClient) -> None:
    with ws(shared_node) as conn:
        subscribe(conn, ["new_blocks"])
        first = recv(conn, timeout=3)
        assert first["method"] == "new_blocks" and first["seq"] == 1
        send(conn, {"method": "unsubscribe", "params": ["new_blocks"], "id": 2})
        events: list[dict[str, Any]] = []
        assert reply_to(conn, 2, events) == {"id": 2, "result": {"subscribed": []}}
        height_at_unsubscribe = client.get_head()["height"]
        # nothing more arrives while several blocks (and a tx) are produced
        tx = shared_node.transfer(
            shared_node.faucet, KeyPair.generate().address, 1, client.next_nonce(shared_node.faucet.address)
        )
        client.wait_for_tx(client.send_tx(tx))
        shared_node.wait_for_height(client, height_at_unsubscribe + 3)
        # frames arrive in order, so an event sent after the unsubscribe would come before this reply
        send(conn, {"method": "subscribe", "params": ["new_blocks"], "id": 3})
        assert recv(conn) == {"id": 3, "result": {"subscribed": ["new_blocks"]}}
        # subscribing again resumes, and seq keeps counting for this connection
        again = recv(conn, timeout=3)
        assert again["method"] == "new_blocks"
        assert again["seq"] == first["seq"] + len(events) + 1
        # unsubscribe with no params drops every topic
        subscribe(conn, ["new_txs"], id_=4)
        send(conn, {"method": "unsubscribe", "params": [], "id": 5})
        assert reply_to(conn, 5) == {"id": 5, "result": {"subscribed": []}}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        pytest.param("this is not json", -32700, id="not-json"),
        pytest.param(b"\x00\xff\x10binary", -32700, id="binary"),
        pytest.param("[1, 2, 3]", -32600, id="json-array"),
        pytest.param('"subscribe"', -32600, id="json-string"),
        pytest.param('{"method":"publish","params":["new_blocks"],"id":9}', -32601, id="unknown-method"),
        pytest.param('{"params":["new_blocks"],"id":9}', -32601, id="no-method"),
        pytest.param('{"method":"subscribe","params":["gossip"],"id":9}', -32602, id="unknown-topic"),
        pytest.param('{"method":"subscribe","params":"new_blocks","id":9}', -32602, id="params-not-a-list"),
        pytest.param('{"method":"subscribe","params":[1],"id":9}', -32602, id="topic-not-a-string"),
    ],
)
def test_garbage_gets_an_error_and_connection_stays_usable(shared_node: Any, message: str | bytes, code: int) -> None:
    with ws(shared_node) as conn:
        for _ in range(2):  # twice: the first error did not break anything
            send(conn, message)
            answer = recv(conn)
            assert answer["error"]["code"] == code, answer
            assert answer["error"]["message"]
            assert answer["id"] == (9 if isinstance(message, str) and '"id":9' in message else None)
        subscribe(conn, ["new_blocks"], id_="after")
        event = recv(conn, timeout=3)
        assert event["method"] == "new_blocks" and event["seq"] == 1


def test_oversized_message_and_bad_path(shared_node: Any) -> None:
    with ws(shared_node) as conn:
        conn.send("x" * (256 * 1024))
        with pytest.raises(ConnectionClosed) as info:
            conn.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009  # message too big
    bad = connect(f"ws://127.0.0.1:{shared_node.ws_port}/not-ws", open_timeout=10, proxy=None)
    with pytest.raises(ConnectionClosed) as info:
        bad.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    bad.close()
    # the server still serves
    with ws(shared_node) as conn:
        assert subscribe(conn, ["new_txs"])["result"] == {"subscribed": ["new_txs"]}


# -- a subscriber that never reads ---------------------------------------------------


class RawSubscriber:
    """A hand-made WebSocket client with a tiny receive buffer that we can simply stop reading."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # a small MSS keeps the server's send buffer small too (loopback's 64 KiB MSS makes it megabytes)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        self.sock.settimeout(5)
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed during the handshake"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_text(self, text: str, opcode: int = 0x1) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_until_close(self, timeout: float) -> tuple[int | None, int]:
        """Drain frames until the server's close frame; return (close code, data frames read)."""
        deadline = time.monotonic() + timeout
        frames = 0
        while time.monotonic() < deadline:
            frame = self._next_frame()
            if frame is None:
                try:
                    chunk = self.sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    return None, frames
                self.buffer += chunk
                continue
            opcode, payload = frame
            if opcode == 0x8:
                return (struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None), frames
            frames += 1
        raise AssertionError(f"no close frame within {timeout}s ({frames} data frames read)")

    def _next_frame(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode, length, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, offset = struct.unpack(">H", buf[2:4])[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, offset = struct.unpack(">Q", buf[2:10])[0], 10
        if len(buf) < offset + length:
            return None
        self.buffer = buf[offset + length :]
        return opcode, buf[offset : offset + length]

    def close(self) -> None:
        self.sock.close()


def _dropped(node: Any) -> float:
    text = httpx.get(node.base_url + "/metrics", timeout=10).text
    match = re.search(r"^aitbc_ws_dropped_subscribers_total ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, "aitbc_ws_dropped_subscribers_total missing from /metrics"
    return float(match.group(1))


def test_subscriber_that_never_reads_is_dropped(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    dropped_before = _dropped(node)

    # a well-behaved subscriber reads blocks the whole time
    heights: list[tuple[float, int]] = []
    stop = threading.Event()
    caught_up = threading.Event()  # set once the reader has seen ``target["height"]``
    target = {"height": 2**62}
    good = ws(node)
    subscribe(good, ["new_blocks"])

    def follow() -> None:
        while not stop.is_set():
            try:
                event = recv(good, timeout=0.5)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            heights.append((time.monotonic(), event["params"]["height"]))
            if event["params"]["height"] >= target["height"]:
                caught_up.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()

    stalled = RawSubscriber(node.ws_port)
    stalled.send_text(orjson.dumps({"method": "subscribe", "params": ["new_txs", "new_blocks"], "id": 1}).decode())
    try:
        # flood: one new_txs event per send_tx call (a mixed batch is answered call by call)
        deadline = time.monotonic() + 30
        rounds = 0
        flood_started = time.monotonic()
        while _dropped(node) <= dropped_before:
            assert time.monotonic() < deadline, f"the stalled subscriber was never dropped after {rounds} rounds"
            nonce = client.next_nonce(node.faucet.address)
            batch: list[dict[str, Any]] = [
                {
                    "jsonrpc": "2.0",
                    "method": "send_tx",
                    "params": [tx_to_json_obj(node.transfer(node.faucet, node.validator.address, 1, nonce + i, fee=1))],
                    "id": i,
                }
                for i in range(800)
            ]
            batch.append({"jsonrpc": "2.0", "method": "get_head", "params": [], "id": "head"})
            answers = httpx.post(node.rpc_url, json=batch, timeout=60).json()
            assert all("result" in a for a in answers), [a for a in answers if "error" in a][:3]
            node.wait_committed(client, [answers[-2]["result"]["tx_hash"]])
            rounds += 1
        flood_ended = time.monotonic()

        # the dropped client finds a 1013 close after what had been queued for it
        code, frames = stalled.read_until_close(timeout=20)
        assert code == 1013, (code, frames)
        stalled.send_text("", opcode=0x8)
    finally:
        stalled.close()

    # block production went on during the flood and goes on after it
    head = client.get_head()["height"]
    node.wait_for_height(client, head + 3)
    target["height"] = head + 3
    if heights and heights[-1][1] >= head + 3:
        caught_up.set()
    assert caught_up.wait(10), "the reading subscriber did not receive the blocks after the flood"
    stop.set()
    reader.join(5)
    good.close()
    assert heights, "the reading subscriber got nothing"
    seen = [h for _, h in heights]
    assert seen == list(range(seen[0], seen[0] + len(seen))), "the reading subscriber missed blocks"
    assert seen[-1] >= head + 3
    during = [h for t, h in heights if flood_started <= t <= flood_ended]
    assert during or flood_ended - flood_started < 4 * BLOCK_TIME, "no block reached the good subscriber in the flood"
    # and new subscribers are served as before
    with ws(node) as conn:
        subscribe(conn, ["new_blocks"])
        assert recv(conn, timeout=3)["method"] == "new_blocks"
