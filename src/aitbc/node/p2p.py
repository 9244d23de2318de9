"""Peer-to-peer transport (port 9082): authenticated connections, gossip with de-duplication, peer scores.

Wire: each frame is ``u32 length | msgpack(message)`` (at most ``MAX_FRAME``
bytes). A connection starts with a handshake in both directions: ``Hello``
(chain id, genesis hash, the node's address and a fresh random challenge),
then ``Auth``: the node key's signature over the *peer's* challenge under the
``p2p-handshake`` domain. A peer is known by the address it proved; one
connection per peer pair is kept (the one dialed by the lower address).

Every peer has a bounded send queue (gossip that does not fit is dropped, TCP
back-pressure bounds what we read) and a score: undecodable frames, bad
signatures and invalid blocks cost points; at zero the peer is disconnected
and refused for ``BAN_SECONDS``. Messages seen before (by hash) are neither
handled nor relayed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from aitbc.node.metrics import NodeMetrics
from aitbc.protocol.block import Block
from aitbc.protocol.crypto import KeyPair, SigningKind, is_valid_signature, sha256
from aitbc.protocol.tx import Tx
from aitbc.protocol.vote import CommitCertificate, Proposal, Vote

log = logging.getLogger("aitbc.node.p2p")

MAX_FRAME: Final = 32 * 1024 * 1024
SEND_QUEUE: Final = 4_096
SEEN_MEMORY: Final = 200_000
START_SCORE: Final = 100
BAN_SECONDS: Final = 30.0
HANDSHAKE_TIMEOUT: Final = 5.0
REDIAL_SECONDS: Final = 0.5


class Hello(msgspec.Struct, frozen=True, tag="hello"):
    chain_id: str
    genesis_hash: str
    address: str
    challenge: str


class Auth(msgspec.Struct, frozen=True, tag="auth"):
    signature: str


class TxGossip(msgspec.Struct, frozen=True, tag="txs"):
    txs: list[Tx]


class ProposalGossip(msgspec.Struct, frozen=True, tag="proposal"):
    proposal: Proposal
    block: Block


class VoteGossip(msgspec.Struct, frozen=True, tag="vote"):
    vote: Vote


class Status(msgspec.Struct, frozen=True, tag="status"):
    height: int
    """The height this node is deciding (its head + 1)."""
    round: int


class SyncRequest(msgspec.Struct, frozen=True, tag="sync_request"):
    from_height: int


class CommittedBlock(msgspec.Struct, frozen=True):
    block: Block
    commit: CommitCertificate


class SyncBlocks(msgspec.Struct, frozen=True, tag="sync_blocks"):
    blocks: list[CommittedBlock]


Message = Hello | Auth | TxGossip | ProposalGossip | VoteGossip | Status | SyncRequest | SyncBlocks

_KINDS: Final[dict[type, str]] = {
    Hello: "hello",
    Auth: "auth",
    TxGossip: "txs",
    ProposalGossip: "proposal",
    VoteGossip: "vote",
    Status: "status",
    SyncRequest: "sync_request",
    SyncBlocks: "sync_blocks",
}


def get_message_kind(message: Message) -> str:
    """The wire tag of a message (the ``type`` label of the p2p metrics)."""
    return _KINDS[type(message)]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


class PeerMisbehaved(Exception):
    def __init__(self, penalty: int, why: str) -> None:
        super().__init__(why)
        self.penalty = penalty


def encode_frame(message: Message) -> bytes:
    body = _encoder.encode(message)
    return len(body).to_bytes(4, "big") + body


def handshake_message(chain_id: str, challenge: str) -> bytes:
    return bytes.fromhex(challenge) + chain_id.encode()


@dataclass(eq=False)
class Peer:
    address: str
    dialed_by: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE))
    score: int = START_SCORE
    dropped: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False

    def send(self, frame: bytes) -> bool:
        if self.closed:
            return False
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True


Handler = Callable[[Peer, Message], Awaitable[None]]


async def _read_frame(reader: asyncio.StreamReader) -> Message:
    header = await reader.readexactly(4)
    size = int.from_bytes(header, "big")
    if size > MAX_FRAME:
        raise PeerMisbehaved(START_SCORE, f"frame of {size} bytes exceeds {MAX_FRAME}")
    body = await reader.readexactly(size)
    try:
        message: Message = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PeerMisbehaved(25, f"undecodable frame: {exc}") from None
    return message


class P2PNode:
    def __init__(
        self,
        *,
        chain_id: str,
        genesis_hash: str,
        key: KeyPair,
        host: str,
        port: int,
        peers: list[str],
        handler: Handler,
        on_connect: Callable[[Peer], None] | None = None,
        block_path: Path | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.key = key
        self.address = key.address
        self.host = host
        self.port = port
        self.dial = [p for p in peers if p]
        self.handler = handler
        self.on_connect = on_connect
        self.block_path = block_path
        self.peers: dict[str, Peer] = {}
        self.banned: dict[str, float] = {}
        self.seen: OrderedDict[bytes, None] = OrderedDict()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._target_address: dict[str, str] = {}
        self.stopping = False

    # -- lifecycle ----------------------------------------------------------
    async def start(self, sock: socket.socket | None = None) -> None:
        if sock is not None:
            self._server = await asyncio.start_server(self._on_inbound, sock=sock)
        else:
            self._server = await asyncio.start_server(self._on_inbound, self.host, self.port)
        for target in self.dial:
            self._tasks.append(asyncio.create_task(self._dial_loop(target)))
        if self.block_path is not None:
            self._tasks.append(asyncio.create_task(self._watch_block_file()))

    async def stop(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        for peer in list(self.peers.values()):
            await self._close(peer)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    @property
    def blocked(self) -> bool:
        return self.block_path is not None and self.block_path.exists()

    async def _watch_block_file(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            if self.blocked:
                for peer in list(self.peers.values()):
                    await self._close(peer)

    # -- connections ----------------------------------------------------------
    async def _dial_loop(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        while not self.stopping:
            known = self._target_address.get(target)
            if not self.blocked and (known is None or known not in self.peers):
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2.0)
                except (OSError, TimeoutError):
                    pass
                else:
                    address = await self._handshake(reader, writer, dialed_by=self.address)
                    if address is not None:
                        self._target_address[target] = address
            await asyncio.sleep(REDIAL_SECONDS)

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.close()
            return
        await self._handshake(reader, writer, dialed_by="")

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialed_by: str
    ) -> str | None:
        """Authenticate the peer; returns its address (None if it failed), connected or a duplicate."""
        challenge = os.urandom(32).hex()
        try:
            writer.write(encode_frame(Hello(self.chain_id, self.genesis_hash, self.address, challenge)))
            hello = await asyncio.wait_for(_read_frame(reader), HANDSHAKE_TIMEOUT)
            if not isinstance(hello, Hello):
                raise PeerMisbehaved(START_SCORE, "expected hello")
            if hello.chain_id != self.chain_id or hello.genesis_hash != self.genesis_hash:
                raise PeerMisbehaved(START_SCORE, f"peer is on another chain ({hello.chain_id})")
            if hello.address == self.address:
                raise PeerMisbehaved(START_SCORE, "connected to ourselves")
            if self.banned.get(hello.address, 0) > time.monotonic():
                raise PeerMisbehaved(START_SCORE, "peer is banned")
            signature = self.key.sign(
                self.chain_id, SigningKind.P2P_HANDSHAKE, handshake_message(self.chain_id, hello.challenge)
            )
            writer.write(encode_frame(Auth(signature.hex())))
            auth = await asyncio.wait_for(_read_frame(reader), HANDSHAKE_TIMEOUT)
            if not isinstance(auth, Auth) or not _valid_auth(hello.address, self.chain_id, challenge, auth.signature):
                raise PeerMisbehaved(START_SCORE, "handshake signature does not prove the node key")
        except (PeerMisbehaved, OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            log.debug("handshake failed", extra={"error": str(exc)})
            writer.close()
            return None
        dialer = dialed_by or hello.address
        peer = Peer(hello.address, dialer, reader, writer)
        existing = self.peers.get(peer.address)
        if existing is not None:
            # keep the connection dialed by the lower address, on both sides alike
            keep_new = peer.dialed_by == min(self.address, peer.address)
            if not keep_new or existing.dialed_by == peer.dialed_by:
                writer.close()
                return peer.address
            await self._close(existing, "replaced by the connection dialed by the lower address")
        self.peers[peer.address] = peer
        self.metrics.p2p_peers.set(len(self.peers))
        peer.tasks = [asyncio.create_task(self._read_loop(peer)), asyncio.create_task(self._write_loop(peer))]
        log.info("peer connected", extra={"peer": peer.address, "peers": len(self.peers)})
        if self.on_connect is not None:
            self.on_connect(peer)
        return peer.address

    async def _close(self, peer: Peer, why: str = "") -> None:
        if peer.closed:
            return
        peer.closed = True
        if self.peers.get(peer.address) is peer:
            del self.peers[peer.address]
            self.metrics.p2p_peers.set(len(self.peers))
        for task in peer.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(Exception):
            peer.writer.close()
        log.info("peer disconnected", extra={"peer": peer.address, "peers": len(self.peers), "why": why})

    async def _write_loop(self, peer: Peer) -> None:
        try:
            while True:
                frame = await peer.queue.get()
                peer.writer.write(frame)
                await peer.writer.drain()
        except (OSError, asyncio.CancelledError) as exc:
            await self._close(peer, f"write: {type(exc).__name__}")

    async def _read_loop(self, peer: Peer) -> None:
        why = "closed"
        try:
            while True:
                message = await _read_frame(peer.reader)
                kind = get_message_kind(message)
                if self.blocked:
                    self.metrics.p2p_dropped.labels(kind, "blocked").inc()
                    why = "blocked"
                    break
                self.metrics.p2p_in.labels(kind).inc()
                try:
                    await self.handler(peer, message)
                except PeerMisbehaved as exc:
                    self.penalize(peer, exc.penalty, str(exc))
                if peer.closed:
                    break
        except PeerMisbehaved as exc:
            self.penalize(peer, exc.penalty, str(exc))
            why = str(exc)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError) as exc:
            why = type(exc).__name__
        except Exception as exc:  # a bug in a handler must not kill the node, only this connection
            log.exception("p2p handler failed", extra={"peer": peer.address})
            why = repr(exc)
        finally:
            await self._close(peer, why)

    def penalize(self, peer: Peer, penalty: int, why: str) -> None:
        peer.score -= penalty
        self.metrics.p2p_penalties.inc()
        log.warning("peer misbehaved", extra={"peer": peer.address, "why": why, "score": peer.score})
        if peer.score <= 0:
            if self.banned.get(peer.address, 0) <= time.monotonic():
                self.metrics.p2p_bans.inc()
            self.banned[peer.address] = time.monotonic() + BAN_SECONDS
            asyncio.get_running_loop().create_task(self._close(peer))

    # -- gossip ---------------------------------------------------------------
    def is_new(self, key: bytes) -> bool:
        """First time we see this message (by hash)? Remembers it; bounded memory."""
        if key in self.seen:
            return False
        self.seen[key] = None
        if len(self.seen) > SEEN_MEMORY:
            self.seen.popitem(last=False)
        return True

    def broadcast(self, message: Message, exclude: Peer | None = None) -> None:
        if self.blocked:
            return
        frame = encode_frame(message)
        kind = get_message_kind(message)
        for peer in list(self.peers.values()):
            if peer is not exclude:
                self._count_send(kind, peer.send(frame))

    def send(self, peer: Peer, message: Message) -> None:
        if not self.blocked:
            self._count_send(get_message_kind(message), peer.send(encode_frame(message)))

    def _count_send(self, kind: str, queued: bool) -> None:
        if queued:
            self.metrics.p2p_out.labels(kind).inc()
        else:
            self.metrics.p2p_dropped.labels(kind, "send_queue_full").inc()


def _valid_auth(address: str, chain_id: str, challenge: str, signature: str) -> bool:
    try:
        return is_valid_signature(
            address,
            chain_id,
            SigningKind.P2P_HANDSHAKE,
            handshake_message(chain_id, challenge),
            bytes.fromhex(signature),
        )
    except Exception:
        return False


def message_key(message: Message) -> bytes:
    return sha256(_encoder.encode(message))
