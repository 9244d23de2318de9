"""P2P transport over real loopback sockets: an encrypted session bound to the node-key handshake, gossip
de-duplicated, garbage and floods cost score under the node key and the IP, bans outlive reconnects,
unauthenticated connections are capped in number and in what they can make us read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aitbc.node.p2p import MAX_FRAME, P2PNode, Peer, PeerMisbehaved
from aitbc.node.p2p_messages import (
    Hello,
    Message,
    Status,
    SyncRequest,
    encode_message,
    handshake_message,
    message_key,
)
from aitbc.node.peerbook import P2PLimits, ip_name, key_name
from aitbc.node.secret import (
    EPHEMERAL_KEY_LEN,
    TAG_LEN,
    FrameOpener,
    FrameSealer,
    derive_session_keys,
    new_ephemeral,
)
from aitbc.protocol.crypto import KeyPair, SigningKind

CHAIN = "aitbc-test"
GENESIS = "ab" * 32


def make_node(
    seed: int,
    peers: list[str],
    inbox: list[tuple[str, Message]],
    chain: str = CHAIN,
    limits: P2PLimits | None = None,
) -> P2PNode:
    async def handler(peer: Peer, message: Message) -> None:
        if isinstance(message, Status) and message.height < 0:
            raise PeerMisbehaved(60, "negative height")
        inbox.append((peer.address, message))

    return P2PNode(
        chain_id=chain,
        genesis_hash=GENESIS,
        key=KeyPair.from_seed(bytes([seed]) * 32),
        host="127.0.0.1",
        port=0,
        peers=peers,
        handler=handler,
        limits=limits,
    )


def port_of(node: P2PNode) -> int:
    assert node._server is not None
    return int(node._server.sockets[0].getsockname()[1])


def refusals(node: Any) -> float:
    """Connections the node refused, before or during the handshake (its own counters)."""
    metrics = node.metrics
    return float(metrics.p2p_refused._value.get() + metrics.p2p_handshakes_refused._value.get())


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro())


class RawSession:
    """A hand-driven client: the key exchange and (optionally forged) hello, then sealed frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sealer: FrameSealer | None = None
        self.opener: FrameOpener | None = None
        self.challenge = b""

    @classmethod
    async def open(cls, port: int) -> RawSession:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def exchange(self) -> None:
        secret, public = new_ephemeral()
        self.writer.write(public)
        peer_public = await self.reader.readexactly(EPHEMERAL_KEY_LEN)
        keys = derive_session_keys(secret, public, peer_public)
        self.sealer, self.opener = FrameSealer(keys.send_key), FrameOpener(keys.recv_key)
        self.challenge = keys.challenge

    async def hello(self, key: KeyPair, claimed: str | None = None) -> Hello:
        assert self.sealer is not None and self.opener is not None
        proof = key.sign(CHAIN, SigningKind.P2P_HANDSHAKE, handshake_message(CHAIN, self.challenge)).hex()
        self.send(Hello(CHAIN, GENESIS, claimed or key.address, proof))
        theirs = await self.opener.read(self.reader, 4096)
        from aitbc.node.p2p_messages import decode_message

        hello = decode_message(theirs)
        assert isinstance(hello, Hello)
        return hello

    def send(self, message: Message) -> None:
        assert self.sealer is not None
        self.writer.write(self.sealer.seal(encode_message(message)))

    def send_body(self, body: bytes) -> None:
        assert self.sealer is not None
        self.writer.write(self.sealer.seal(body))

    async def closed_by_peer(self, timeout: float = 3.0) -> bool:
        try:
            while True:
                if not await asyncio.wait_for(self.reader.read(65536), timeout):
                    return True
        except (TimeoutError, ConnectionError):
            return False


async def connect_as(port: int, key: KeyPair) -> RawSession:
    session = await RawSession.open(port)
    await session.exchange()
    await session.hello(key)
    return session


def test_two_nodes_connect_once_and_exchange_messages() -> None:
    async def scenario() -> None:
        inbox_a: list[tuple[str, Message]] = []
        inbox_b: list[tuple[str, Message]] = []
        a = make_node(1, [], inbox_a)
        await a.start()
        b = make_node(2, [f"127.0.0.1:{port_of(a)}"], inbox_b)
        await b.start()
        a.dial = [f"127.0.0.1:{port_of(b)}"]  # both sides dial: still one connection per pair
        a._tasks.append(asyncio.create_task(a._dial_loop(a.dial[0])))
        await wait_for(lambda: b.key.address in a.peers and a.key.address in b.peers)
        await asyncio.sleep(1.2)
        assert len(a.peers) == len(b.peers) == 1
        a.broadcast(Status(7, 0))
        await wait_for(lambda: bool(inbox_b))
        assert inbox_b == [(a.key.address, Status(7, 0))]
        await a.stop()
        await b.stop()

    run(scenario)


def test_a_peer_on_another_chain_or_without_the_key_is_refused() -> None:
    async def scenario() -> None:
        inbox: list[tuple[str, Message]] = []
        a = make_node(1, [], inbox)
        await a.start()
        other = make_node(3, [f"127.0.0.1:{port_of(a)}"], [], chain="other-chain")
        await other.start()
        await wait_for(lambda: refusals(a) >= 1)  # other dialled and a refused the handshake
        assert not a.peers and not other.peers
        # an impostor claims node 5's address but signs the session challenge with another key
        session = await RawSession.open(port_of(a))
        await session.exchange()
        claimed = KeyPair.from_seed(b"\x05" * 32).address
        await session.hello(KeyPair.from_seed(b"\x06" * 32), claimed=claimed)
        assert await session.closed_by_peer()
        assert claimed not in a.peers
        await a.stop()
        await other.stop()

    run(scenario)


def test_misbehaving_peer_is_scored_down_disconnected_and_banned() -> None:
    async def scenario() -> None:
        a = make_node(1, [], [])
        await a.start()
        inbox_b: list[tuple[str, Message]] = []
        b = make_node(2, [f"127.0.0.1:{port_of(a)}"], inbox_b)
        await b.start()
        await wait_for(lambda: b.key.address in a.peers)
        b.broadcast(Status(-1, 0))  # costs 60 of 100
        await wait_for(lambda: a.book.score(key_name(b.key.address), _now()) < 50)
        b.broadcast(Status(-1, 0))
        await wait_for(lambda: b.key.address not in a.peers)
        assert a.is_banned(b.key.address)
        before = refusals(a)
        await wait_for(lambda: refusals(a) > before)  # b redialled and was refused
        assert b.key.address not in a.peers  # redials are refused while banned
        await a.stop()
        await b.stop()

    run(scenario)


def test_an_oversized_frame_disconnects_at_once() -> None:
    async def scenario() -> None:
        a = make_node(1, [], [])
        await a.start()
        session = await connect_as(port_of(a), KeyPair.from_seed(b"\x02" * 32))
        session.writer.write((MAX_FRAME + TAG_LEN + 1).to_bytes(4, "big"))
        assert await session.closed_by_peer()
        assert a.is_banned(KeyPair.from_seed(b"\x02" * 32).address)
        await a.stop()

    run(scenario)


def test_seen_messages_are_remembered_within_bounds() -> None:
    node = make_node(1, [], [])
    key = message_key(Status(1, 0))
    assert node.is_new(key) and not node.is_new(key)
    assert node.is_new(message_key(Status(1, 1)))


def test_send_queue_is_bounded() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        sealer, opener = FrameSealer(b"k" * 32), FrameOpener(b"k" * 32)
        peer = Peer("x", "x", "127.0.0.1", reader, None, sealer, opener)  # type: ignore[arg-type]
        accepted = sum(peer.send(b"frame") for _ in range(5_000))
        assert accepted == 4_096 and peer.dropped == 5_000 - 4_096

    run(scenario)


# -- issue 13: a dishonest peer ---------------------------------------------------------------------


def test_item4_pre_auth_frames_are_capped_in_kib_and_inbound_connections_per_ip() -> None:
    """Item 4: an unauthenticated connection declaring a 32 MiB first frame is cut off before we read it,
    and inbound connections are capped per IP (and in total)."""

    async def scenario() -> None:
        limits = P2PLimits(max_inbound_per_ip=3, max_inbound=5)
        a = make_node(1, [], [], limits=limits)
        await a.start()
        session = await RawSession.open(port_of(a))
        await session.exchange()
        session.writer.write((32 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * 65536)
        assert await session.closed_by_peer()
        # the same without even the key exchange: the 4-byte length is part of a (junk) ephemeral key
        raw = await RawSession.open(port_of(a))
        raw.writer.write(b"\x00" * 28 + (32 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * 65536)
        assert await raw.closed_by_peer()
        held = [await RawSession.open(port_of(a)) for _ in range(5)]
        await wait_for(lambda: a.inbound_total == 3)
        closed = [await s.closed_by_peer(timeout=0.5) for s in held]
        assert closed == [False, False, False, True, True]
        assert a.metrics.p2p_refused._value.get() == 2
        for s in held:
            s.writer.close()
        await wait_for(lambda: a.inbound_total == 0)
        await a.stop()

    run(scenario)


def test_item6_score_survives_reconnects_and_undecodable_frames_cost_points() -> None:
    """Item 6: each undecodable frame costs 25 under the node key; reconnecting does not reset the score,
    so the fourth one bans the key, and a banned key is refused on every new connection."""

    async def scenario() -> None:
        a = make_node(1, [], [])
        await a.start()
        attacker = KeyPair.from_seed(b"\x07" * 32)
        for _ in range(4):
            session = await connect_as(port_of(a), attacker)
            session.send_body(b"\xc1 not msgpack")
            assert await session.closed_by_peer()
        assert a.is_banned(attacker.address)
        session = await RawSession.open(port_of(a))
        await session.exchange()
        proof = attacker.sign(CHAIN, SigningKind.P2P_HANDSHAKE, handshake_message(CHAIN, session.challenge)).hex()
        session.send(Hello(CHAIN, GENESIS, attacker.address, proof))
        assert await session.closed_by_peer()
        assert attacker.address not in a.peers
        await a.stop()

    run(scenario)


def test_item6_bans_are_keyed_by_ip_too_so_fresh_keys_do_not_evade_them() -> None:
    """Item 6: an attacker rotating node keys on one address exhausts the address's score: then any new
    connection from it is refused before the handshake."""

    async def scenario() -> None:
        a = make_node(1, [], [])
        await a.start()
        for seed in range(20, 24):  # four keys, each banned (100 points), take the IP's 400
            session = await connect_as(port_of(a), KeyPair.from_seed(bytes([seed]) * 32))
            session.writer.write((MAX_FRAME + TAG_LEN + 1).to_bytes(4, "big"))
            assert await session.closed_by_peer()
        assert a.book.is_banned(ip_name("127.0.0.1"), _now())
        fresh = await RawSession.open(port_of(a))
        assert await fresh.closed_by_peer(timeout=1.0)
        await a.stop()

    run(scenario)


def _now() -> float:
    import time

    return time.monotonic()


def test_item6_a_bad_signature_tx_costs_the_sender() -> None:
    """Item 6: the node's handler raising PeerMisbehaved (as the BFT shell does for a bad-signature tx)
    takes points under both the key and the IP, and they stay after the connection is gone."""

    async def scenario() -> None:
        a = make_node(1, [], [])
        await a.start()
        attacker = KeyPair.from_seed(b"\x08" * 32)
        session = await connect_as(port_of(a), attacker)
        session.send(Status(-1, 0))  # the test handler's stand-in for an invalid tx: 60 points
        await wait_for(lambda: a.book.score(key_name(attacker.address), _now()) < 50)
        session.writer.close()
        await wait_for(lambda: attacker.address not in a.peers)
        assert a.book.score(key_name(attacker.address), _now()) < 50
        assert a.book.score(ip_name("127.0.0.1"), _now()) < 350
        await a.stop()

    run(scenario)


def test_item7_status_and_sync_requests_are_rate_limited_per_peer() -> None:
    """Item 7: a flood of status messages is cut to the per-peer rate and penalised until banned; a flood of
    sync requests reaches the handler only at the per-peer rate."""

    async def scenario() -> None:
        inbox: list[tuple[str, Message]] = []
        a = make_node(1, [], inbox)
        await a.start()
        syncer = await connect_as(port_of(a), KeyPair.from_seed(b"\x09" * 32))
        for i in range(1_000):
            syncer.send(SyncRequest(i))
        await syncer.writer.drain()
        await asyncio.sleep(0.5)
        served = sum(isinstance(m, SyncRequest) for _, m in inbox)
        assert 15 <= served <= 40, served  # a burst of 20, then 10 per second
        flooder_key = KeyPair.from_seed(b"\x0a" * 32)
        flooder = await connect_as(port_of(a), flooder_key)
        for i in range(1_100):  # 2 points per 20 dropped: banned after ~1,000
            flooder.send(Status(i, 0))
        assert await flooder.closed_by_peer()
        assert a.is_banned(flooder_key.address)
        assert sum(isinstance(m, Status) for _, m in inbox) <= 12
        await a.stop()

    run(scenario)


def test_item10_frames_are_encrypted_and_an_altered_or_replayed_frame_ends_the_connection() -> None:
    """Item 10: through a relay that records the bytes, two nodes' traffic holds no plaintext message;
    flipping one bit of a frame (or replaying one) in transit ends the connection, the frame is not handled."""

    async def scenario() -> None:
        captured = bytearray()
        mode = {"tamper": False, "replay": False}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            with __import__("contextlib").suppress(Exception):
                while data := await src.read(65536):
                    if record:
                        captured.extend(data)
                        if mode["tamper"] and len(data) > 40:
                            data = data[:-1] + bytes([data[-1] ^ 1])
                            mode["tamper"] = False
                        elif mode["replay"]:
                            data = data + data
                            mode["replay"] = False
                    dst.write(data)
                    await dst.drain()
            dst.close()

        inbox: list[tuple[str, Message]] = []
        b = make_node(2, [], inbox)
        await b.start()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port_of(b))
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

        proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
        proxy_port = proxy.sockets[0].getsockname()[1]
        a = make_node(1, [f"127.0.0.1:{proxy_port}"], [])
        await a.start()
        await wait_for(lambda: a.key.address in b.peers)
        secret = Status(123456789, 987654321)
        a.broadcast(secret)
        await wait_for(lambda: any(m == secret for _, m in inbox))
        assert encode_message(secret) not in captured
        assert b"status" not in captured and b"hello" not in captured and CHAIN.encode() not in captured
        broken = b.metrics.p2p_broken._value.get()
        mode["tamper"] = True
        tampered = Status(5, 5)
        a.broadcast(tampered)
        await wait_for(lambda: b.metrics.p2p_broken._value.get() == broken + 1)
        assert all(m != tampered for _, m in inbox)
        await wait_for(lambda: a.key.address in b.peers)  # a fresh session is dialed again
        mode["replay"] = True
        a.broadcast(Status(6, 6))
        await wait_for(lambda: b.metrics.p2p_broken._value.get() == broken + 2)
        assert sum(m == Status(6, 6) for _, m in inbox) == 1
        await a.stop()
        await b.stop()
        proxy.close()

    run(scenario)


def test_validators_sharing_a_banned_ip_still_connect_and_a_partition_file_cuts_listed_peers(tmp_path: Any) -> None:
    """With ``protect`` (the BFT node passes "is a validator of the current set"), a banned IP refuses every
    other key after the handshake but not a validator's; ``block_path`` listing addresses cuts just those."""

    async def scenario() -> None:
        validator = KeyPair.from_seed(b"\x31" * 32)
        a = make_node(1, [], [])
        a.protect = lambda address: address == validator.address
        await a.start()
        a.book.penalize((ip_name("127.0.0.1"),), 400, _now())  # the shared address is banned
        stranger = await RawSession.open(port_of(a))
        await stranger.exchange()
        proof = KeyPair.from_seed(b"\x32" * 32)
        await stranger.hello(proof)
        assert await stranger.closed_by_peer()
        held = await connect_as(port_of(a), validator)
        await wait_for(lambda: validator.address in a.peers)
        held.writer.close()
        await a.stop()
        # a partition: node c cuts node d (listed in its block file) but keeps node e
        block = tmp_path / "p2p.blocked"
        inbox: list[tuple[str, Message]] = []
        c = P2PNode(
            chain_id=CHAIN,
            genesis_hash=GENESIS,
            key=KeyPair.from_seed(b"\x33" * 32),
            host="127.0.0.1",
            port=0,
            peers=[],
            handler=lambda peer, message: _collect(inbox, peer, message),
            block_path=block,
        )
        await c.start()
        d, e = make_node(4, [f"127.0.0.1:{port_of(c)}"], []), make_node(5, [f"127.0.0.1:{port_of(c)}"], [])
        await d.start()
        await e.start()
        await wait_for(lambda: d.key.address in c.peers and e.key.address in c.peers)
        block.write_text(d.key.address + "\n")
        await wait_for(lambda: d.key.address not in c.peers)
        before = refusals(c)
        await wait_for(lambda: refusals(c) > before)  # d redialled and was refused
        assert d.key.address not in c.peers and e.key.address in c.peers
        block.unlink()
        await wait_for(lambda: d.key.address in c.peers)
        for node in (c, d, e):
            await node.stop()

    run(scenario)


async def _collect(inbox: list[tuple[str, Message]], peer: Peer, message: Message) -> None:
    inbox.append((peer.address, message))
