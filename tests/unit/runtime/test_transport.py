"""``GilFreeWriter``: writes leave at once through ``os.write`` (GIL released), in order, and nothing is lost."""

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
from aitbc.runtime.transport import GilFreeWriter


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
def test_writes_go_straight_to_the_socket_and_close_keeps_them(loop_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _count_os_writes(monkeypatch)

    async def scenario() -> bytes:
        async with _pair() as (raw, peer):
            writer = GilFreeWriter.wrap(raw)
            assert isinstance(writer, GilFreeWriter)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            writer.write(b"hello")
            assert sizes == [38, 5], "at once, not held for the end of the loop's turn"
            writer.writelines([b"b", b"ye"])
            writer.close()
            writer.write(b"after close")  # dropped, as the transport's own write drops it
            await asyncio.sleep(0.05)
            return await asyncio.to_thread(_read_all, peer)

    runner = uvloop.run if loop_kind == "uvloop" else asyncio.run
    assert runner(scenario()) == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhellobye"
    assert sizes == [38, 5, 3]


def test_what_the_socket_does_not_take_is_queued_in_order_and_delivered() -> None:
    """More than the socket buffer holds: the rest goes to the transport's queue, and later writes follow it
    there (never straight to the socket ahead of it)."""
    big = os.urandom(8 * 1024 * 1024)

    async def scenario() -> bytes:
        async with _pair() as (raw, peer):
            writer = GilFreeWriter.wrap(raw)
            reading = asyncio.create_task(asyncio.to_thread(_read_all, peer))
            writer.write(big)
            assert raw.get_write_buffer_size() > 0, "the socket took only part of it"
            writer.write(b"tail")  # behind the queued rest, not straight to the socket
            while raw.get_write_buffer_size():
                await asyncio.sleep(0.01)
            writer.close()
            return await reading

    assert uvloop.run(scenario()) == big + b"tail"


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
