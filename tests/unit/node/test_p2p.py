"""P2P transport over real loopback sockets: the handshake proves the node key, gossip is de-duplicated,
garbage costs score and a peer at zero is disconnected and banned, one connection per pair."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aitbc.node.p2p import (
    MAX_FRAME,
    Auth,
    Hello,
    Message,
    P2PNode,
    Peer,
    PeerMisbehaved,
    Status,
    _read_frame,
    encode_frame,
    message_key,
)
from aitbc.protocol.crypto import KeyPair

CHAIN = "aitbc-test"
GENESIS = "ab" * 32


def make_node(seed: int, peers: list[str], inbox: list[tuple[str, Message]], chain: str = CHAIN) -> P2PNode:
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
    )


def port_of(node: P2PNode) -> int:
    assert node._server is not None
    return int(node._server.sockets[0].getsockname()[1])


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro())


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
        await asyncio.sleep(1.0)
        assert not a.peers and not other.peers
        # an impostor claims node 5's address but signs with another key
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(a))
        impostor = KeyPair.from_seed(b"\x06" * 32)
        claimed = KeyPair.from_seed(b"\x05" * 32).address
        writer.write(encode_frame(Hello(CHAIN, GENESIS, claimed, "00" * 32)))
        hello = await _read_frame(reader)
        assert isinstance(hello, Hello)
        from aitbc.node.p2p import handshake_message
        from aitbc.protocol.crypto import SigningKind

        forged = impostor.sign(CHAIN, SigningKind.P2P_HANDSHAKE, handshake_message(CHAIN, hello.challenge))
        writer.write(encode_frame(Auth(forged.hex())))
        await writer.drain()
        await asyncio.sleep(0.3)
        assert claimed not in a.peers
        writer.close()
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
        await asyncio.sleep(0.2)
        assert a.peers[b.key.address].score == 40
        b.broadcast(Status(-1, 0))
        await wait_for(lambda: b.key.address not in a.peers)
        assert b.key.address in a.banned
        await asyncio.sleep(1.0)
        assert b.key.address not in a.peers  # redials are refused while banned
        await a.stop()
        await b.stop()

    run(scenario)


def test_an_oversized_frame_disconnects_at_once() -> None:
    async def scenario() -> None:
        a = make_node(1, [], [])
        await a.start()
        b = make_node(2, [f"127.0.0.1:{port_of(a)}"], [])
        await b.start()
        await wait_for(lambda: b.key.address in a.peers)
        peer = b.peers[a.key.address]
        peer.send((MAX_FRAME + 1).to_bytes(4, "big"))
        await wait_for(lambda: b.key.address not in a.peers)
        assert b.key.address in a.banned
        await a.stop()
        await b.stop()

    run(scenario)


def test_seen_messages_are_remembered_within_bounds() -> None:
    node = make_node(1, [], [])
    key = message_key(Status(1, 0))
    assert node.is_new(key) and not node.is_new(key)
    assert node.is_new(message_key(Status(1, 1)))


def test_send_queue_is_bounded() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        peer = Peer("x", "x", reader, None)  # type: ignore[arg-type]
        accepted = sum(peer.send(b"frame") for _ in range(5_000))
        assert accepted == 4_096 and peer.dropped == 5_000 - 4_096

    run(scenario)
