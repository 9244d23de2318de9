"""Peer-to-peer transport (port 9082): encrypted authenticated connections, gossip, peer scores and caps.

A connection starts with an ephemeral X25519 key exchange (``aitbc.node.secret``);
from then on every frame is ChaCha20-Poly1305 sealed with a counter nonce,
and one that does not open (altered, dropped, replayed) ends the connection.
The first sealed frame each way is ``Hello`` (chain id, genesis hash, the
node's address and its node key's signature over the session challenge), at
most ``pre_auth_frame`` bytes: an unauthenticated connection can make us hold
a few KiB, never a 32 MiB frame. A peer is known by the address it proved;
one connection per peer pair is kept (the one dialed by the lower address).

Inbound connections are capped in total and per IP. Misbehaviour (undecodable
frames, bad signatures, invalid blocks, floods) costs points in the
``PeerBook`` under both the node key and the IP, scores survive reconnects,
and a name at zero is banned. Status messages and sync requests are rate
limited per peer. Every peer has a bounded send queue (gossip that does not
fit is dropped; TCP back-pressure bounds what we read). Messages seen before
(by hash) are neither handled nor relayed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from aitbc.node.metrics import NodeMetrics
from aitbc.node.p2p_messages import (
    Hello,
    Message,
    decode_message,
    encode_message,
    get_message_kind,
    handshake_message,
)
from aitbc.node.peerbook import P2PLimits, PeerBook, TokenBucket, ip_name, key_name
from aitbc.node.secret import (
    EPHEMERAL_KEY_LEN,
    ChannelBroken,
    FrameOpener,
    FrameSealer,
    FrameTooLarge,
    derive_session_keys,
    new_ephemeral,
)
from aitbc.protocol.crypto import KeyPair, SigningKind, is_valid_signature

log = logging.getLogger("aitbc.node.p2p")

MAX_FRAME: Final = P2PLimits().max_frame
SEND_QUEUE: Final = 4_096
SEEN_MEMORY: Final = 200_000
HANDSHAKE_TIMEOUT: Final = 5.0
REDIAL_SECONDS: Final = 0.5
UNDECODABLE_PENALTY: Final = 25
FLOOD_PENALTY: Final = 2
FLOOD_DROPS: Final = 20


class PeerMisbehaved(Exception):
    def __init__(self, penalty: int, why: str) -> None:
        super().__init__(why)
        self.penalty = penalty


@dataclass(eq=False)
class Peer:
    address: str
    dialed_by: str
    host: str
    """The peer's IP address (its ban-book name besides its node key)."""
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    sealer: FrameSealer
    opener: FrameOpener
    inbound: bool = False
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE))
    """Encoded messages waiting to be sealed and written, in order."""
    dropped: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    flood_drops: int = 0

    @property
    def names(self) -> tuple[str, str]:
        return key_name(self.address), ip_name(self.host)

    def send(self, body: bytes) -> bool:
        if self.closed:
            return False
        try:
            self.queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    @property
    def backlog(self) -> int:
        return self.queue.qsize()


Handler = Callable[[Peer, Message], Awaitable[None]]


async def read_message(opener: FrameOpener, reader: asyncio.StreamReader, max_size: int) -> Message:
    """Open the next sealed frame and decode it (``ChannelBroken`` / ``PeerMisbehaved`` otherwise)."""
    try:
        body = await opener.read(reader, max_size)
    except FrameTooLarge as exc:
        raise PeerMisbehaved(100, str(exc)) from None
    try:
        return decode_message(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PeerMisbehaved(UNDECODABLE_PENALTY, f"undecodable frame: {exc}") from None


def _peer_host(writer: asyncio.StreamWriter) -> str:
    info = writer.get_extra_info("peername")
    return str(info[0]) if info else "?"


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
        limits: P2PLimits | None = None,
        protect: Callable[[str], bool] | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self.limits = limits or P2PLimits()
        self.book = PeerBook(self.limits)
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
        self.protect = protect
        """Node keys an IP ban does not refuse (the validators: several may share an address); their own
        key's score still applies. Without it a banned IP is refused before the handshake."""
        self._cut: frozenset[str] | None = None
        """From ``block_path``: None (nothing blocked), empty (all p2p traffic dropped) or the addresses cut."""
        self.peers: dict[str, Peer] = {}
        self.inbound: dict[str, int] = {}
        """Open inbound connections (in the handshake or authenticated) per IP."""
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
            self._read_block_file()
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
        """All p2p traffic dropped (``block_path`` exists and is empty)."""
        return self._cut is not None and not self._cut

    def is_cut(self, address: str) -> bool:
        """Traffic with this peer dropped: all blocked, or ``block_path`` lists it (a network partition)."""
        return self._cut is not None and (not self._cut or address in self._cut)

    def _read_block_file(self) -> None:
        assert self.block_path is not None
        try:
            text = self.block_path.read_text()
        except OSError:
            self._cut = None
            return
        self._cut = frozenset(line.strip() for line in text.splitlines() if line.strip())

    @property
    def inbound_total(self) -> int:
        return sum(self.inbound.values())

    async def _watch_block_file(self) -> None:
        """``block_path`` (the perturbation harness): empty = drop all p2p traffic, else one address per line
        to cut off (a partition)."""
        while True:
            await asyncio.sleep(0.2)
            self._read_block_file()
            for peer in list(self.peers.values()):
                if self.is_cut(peer.address):
                    await self._close(peer, "blocked")

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
                    address = await self._handshake(reader, writer, dialed_by=self.address, inbound=False)
                    if address is not None:
                        self._target_address[target] = address
            await asyncio.sleep(REDIAL_SECONDS)

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = _peer_host(writer)
        limits = self.limits
        refused = (
            self.blocked
            or self.inbound_total >= limits.max_inbound
            or self.inbound.get(host, 0) >= limits.max_inbound_per_ip
            or (self.protect is None and self.book.is_banned(ip_name(host), time.monotonic()))
        )
        if refused:
            self.metrics.p2p_refused.inc()
            writer.close()
            return
        self.inbound[host] = self.inbound.get(host, 0) + 1
        address = await self._handshake(reader, writer, dialed_by="", inbound=True)
        peer = self.peers.get(address) if address is not None else None
        if peer is None or peer.writer is not writer:
            self._release_inbound(host)

    def _release_inbound(self, host: str) -> None:
        left = self.inbound.get(host, 0) - 1
        if left > 0:
            self.inbound[host] = left
        else:
            self.inbound.pop(host, None)

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialed_by: str, inbound: bool
    ) -> str | None:
        """Key exchange, then authenticate the peer; returns its address (None if it failed)."""
        host = _peer_host(writer)
        try:
            hello, sealer, opener = await asyncio.wait_for(self._exchange(reader, writer), HANDSHAKE_TIMEOUT)
        except PeerMisbehaved as exc:
            log.debug("handshake refused", extra={"error": str(exc), "host": host})
            self.metrics.p2p_handshakes_refused.inc()
            if exc.penalty:
                self.book.penalize((ip_name(host),), exc.penalty, time.monotonic())
            writer.close()
            return None
        except (ChannelBroken, OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            log.debug("handshake failed", extra={"error": str(exc), "host": host})
            writer.close()
            return None
        dialer = dialed_by or hello.address
        peer = Peer(hello.address, dialer, host, reader, writer, sealer, opener, inbound=inbound)
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

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Hello, FrameSealer, FrameOpener]:
        secret, public = new_ephemeral()
        writer.write(public)
        peer_public = await reader.readexactly(EPHEMERAL_KEY_LEN)
        keys = derive_session_keys(secret, public, peer_public)
        sealer, opener = FrameSealer(keys.send_key), FrameOpener(keys.recv_key)
        proof = self.key.sign(
            self.chain_id, SigningKind.P2P_HANDSHAKE, handshake_message(self.chain_id, keys.challenge)
        )
        writer.write(sealer.seal(encode_message(Hello(self.chain_id, self.genesis_hash, self.address, proof.hex()))))
        hello = await read_message(opener, reader, self.limits.pre_auth_frame)
        if not isinstance(hello, Hello):
            raise PeerMisbehaved(self.limits.key_start, "expected hello")
        if hello.chain_id != self.chain_id or hello.genesis_hash != self.genesis_hash:
            raise PeerMisbehaved(0, f"peer is on another chain ({hello.chain_id})")
        if hello.address == self.address:
            raise PeerMisbehaved(0, "connected to ourselves")
        if not _valid_proof(hello.address, self.chain_id, keys.challenge, hello.signature):
            raise PeerMisbehaved(self.limits.key_start, "handshake signature does not prove the node key")
        if self._refuses(hello.address, _peer_host(writer)):
            raise PeerMisbehaved(0, "peer is banned or cut off")
        return hello, sealer, opener

    def _refuses(self, address: str, host: str) -> bool:
        now = time.monotonic()
        if self.is_cut(address) or self.book.is_banned(key_name(address), now):
            return True
        return self.book.is_banned(ip_name(host), now) and not (self.protect is not None and self.protect(address))

    async def _close(self, peer: Peer, why: str = "") -> None:
        self._drop(peer, why)

    def _drop(self, peer: Peer, why: str) -> None:
        """Close the connection now (cancels its tasks except the caller)."""
        if peer.closed:
            return
        peer.closed = True
        if peer.inbound:
            self._release_inbound(peer.host)
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
                body = await peer.queue.get()
                peer.writer.write(peer.sealer.seal(body))
                await peer.writer.drain()
        except (OSError, ChannelBroken, asyncio.CancelledError) as exc:
            await self._close(peer, f"write: {type(exc).__name__}")

    async def _read_loop(self, peer: Peer) -> None:
        why = "closed"
        try:
            while True:
                message = await read_message(peer.opener, peer.reader, self.limits.max_frame)
                kind = get_message_kind(message)
                if self.is_cut(peer.address):
                    self.metrics.p2p_dropped.labels(kind, "blocked").inc()
                    why = "blocked"
                    break
                self.metrics.p2p_in.labels(kind).inc()
                if not self._within_rate(peer, kind):
                    continue
                try:
                    await self.handler(peer, message)
                except PeerMisbehaved as exc:
                    self.penalize(peer, exc.penalty, str(exc))
                if peer.closed:
                    break
        except PeerMisbehaved as exc:
            self.penalize(peer, exc.penalty, str(exc))
            why = str(exc)
        except ChannelBroken as exc:
            self.metrics.p2p_broken.inc()
            why = str(exc)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError) as exc:
            why = type(exc).__name__
        except Exception as exc:  # a bug in a handler must not kill the node, only this connection
            log.exception("p2p handler failed", extra={"peer": peer.address})
            why = repr(exc)
        finally:
            await self._close(peer, why)

    def _within_rate(self, peer: Peer, kind: str) -> bool:
        """Status and sync requests are rate limited per peer: floods of status are penalised, surplus
        sync requests only dropped (a node catching up asks as fast as replies arrive)."""
        if kind == "status":
            rate = self.limits.status_per_s
        elif kind == "sync_request":
            rate = self.limits.sync_per_s
        else:
            return True
        now = time.monotonic()
        bucket = peer.buckets.get(kind)
        if bucket is None:
            bucket = peer.buckets[kind] = TokenBucket(rate, 2 * rate, now)
        if bucket.take(now):
            return True
        self.metrics.p2p_dropped.labels(kind, "rate_limited").inc()
        if kind == "status":
            # a node that stalled sends a burst of honest status messages when it wakes: only a sustained
            # flood costs points (one per FLOOD_DROPS dropped)
            peer.flood_drops += 1
            if peer.flood_drops % FLOOD_DROPS == 0:
                self.penalize(peer, FLOOD_PENALTY, "status flood")
        return False

    def penalize(self, peer: Peer, penalty: int, why: str) -> None:
        """Score the peer down under its node key and its IP; a banned name loses its connections."""
        now = time.monotonic()
        banned = self.book.penalize(peer.names, penalty, now)
        self.metrics.p2p_penalties.inc()
        log.warning(
            "peer misbehaved",
            extra={"peer": peer.address, "why": why, "score": self.book.score(key_name(peer.address), now)},
        )
        if banned:
            self.metrics.p2p_bans.inc(len(banned))
            for other in list(self.peers.values()):
                if other is not peer and self._refuses(other.address, other.host):
                    self._drop(other, "banned")
            if self._refuses(peer.address, peer.host):
                self._drop(peer, "banned")

    def is_banned(self, address: str) -> bool:
        return self.book.is_banned(key_name(address), time.monotonic())

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
        body = encode_message(message)
        kind = get_message_kind(message)
        for peer in list(self.peers.values()):
            if peer is not exclude and not self.is_cut(peer.address):
                self._count_send(kind, peer.send(body))

    def send(self, peer: Peer, message: Message) -> None:
        if not self.is_cut(peer.address):
            self._count_send(get_message_kind(message), peer.send(encode_message(message)))

    def _count_send(self, kind: str, queued: bool) -> None:
        if queued:
            self.metrics.p2p_out.labels(kind).inc()
        else:
            self.metrics.p2p_dropped.labels(kind, "send_queue_full").inc()


def _valid_proof(address: str, chain_id: str, challenge: bytes, signature: str) -> bool:
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
