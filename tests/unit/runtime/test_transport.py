"""``GilFreeWriter``: a turn's writes leave in one GIL-free system call, in order, and nothing is lost."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvloop

from aitbc.runtime import transport as transport_module
from aitbc.runtime.transport import MAX_GATHERED, GilFreeWriter


class _Sink(asyncio.Protocol):
    pass


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[asyncio.Transport, socket.socket]]:
    """A real TCP-like pair: the server side as the loop's transport, the client side as a blocking socket."""
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(_Sink, ours)
    try:
        yield transport, theirs
    finally:
        transport.abort()
        theirs.close()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _count_os_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real = os.write

    def spy(fd: int, data: Any) -> int:
        sizes.append(len(data))
        return real(fd, data)

    monkeypatch.setattr(transport_module.os, "write", spy)
    return sizes


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_turns_writes_go_out_in_one_call_and_close_sends_them_first(
    loop_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _count_os_writes(monkeypatch)

    async def scenario() -> bytes:
        async with _pair() as (raw, peer):
            writer = GilFreeWriter.wrap(raw)
            assert isinstance(writer, GilFreeWriter)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            writer.write(b"hello")
            assert writer.get_write_buffer_size() == 43 and sizes == [], "gathered until the end of the turn"
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert sizes == [43]
            writer.write(b"bye")
            writer.close()  # before the turn ends: what is gathered leaves first
            await asyncio.sleep(0.05)
            return await asyncio.to_thread(_read_all, peer)

    runner = uvloop.run if loop_kind == "uvloop" else asyncio.run
    assert runner(scenario()) == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhellobye"
    assert sizes == [43, 3]


def test_what_the_socket_does_not_take_is_queued_in_order_and_delivered() -> None:
    """More than the socket buffer holds: the rest goes to the transport's queue, and later writes follow it
    there (never straight to the socket ahead of it)."""
    big = os.urandom(8 * 1024 * 1024)

    async def scenario() -> bytes:
        async with _pair() as (raw, peer):
            writer = GilFreeWriter.wrap(raw)
            reading = asyncio.create_task(asyncio.to_thread(_read_all, peer))
            writer.write(big)  # past MAX_GATHERED: sent at once
            assert raw.get_write_buffer_size() > 0, "the socket took only part of it"
            writer.write(b"tail")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            while raw.get_write_buffer_size():
                await asyncio.sleep(0.01)
            writer.close()
            return await reading

    assert uvloop.run(scenario()) == big + b"tail"


def test_gathering_is_bounded_and_abort_drops_what_is_gathered(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _count_os_writes(monkeypatch)

    async def scenario() -> bytes:
        async with _pair() as (raw, peer):
            writer = GilFreeWriter.wrap(raw)
            for _ in range(MAX_GATHERED // 1024):
                writer.write(b"x" * 1024)  # a handler that never yields
            assert sizes == [MAX_GATHERED], "sent once the bound is reached, without waiting for the turn"
            writer.write(b"dropped")
            writer.abort()
            await asyncio.sleep(0.05)
            return await asyncio.to_thread(_read_all, peer)

    assert uvloop.run(scenario()) == b"x" * MAX_GATHERED
    assert sizes == [MAX_GATHERED]


def test_tls_and_socketless_transports_are_left_as_they_are() -> None:
    class _Fake(asyncio.Transport):
        def __init__(self, extra: dict[str, Any]) -> None:
            super().__init__(extra)

    async def scenario() -> None:
        tls = _Fake({"sslcontext": ssl.create_default_context(), "socket": socket.socket()})
        assert GilFreeWriter.wrap(tls) is tls
        tls.get_extra_info("socket").close()
        bare = _Fake({})
        assert GilFreeWriter.wrap(bare) is bare

    asyncio.run(scenario())
