"""Writes to a connection are made without holding Python's GIL.

uvloop makes each ``transport.write`` a ``write(2)`` on the spot, with the GIL held. On loopback that
call also runs the receiving side's TCP stack and wakes the reader: ``bench/settlement.py --profile-gil``
found the coordinator's event loop holding the GIL in these writes for 12-14 % of all GIL time at
600 jobs/s (~85 µs a write), while its database threads waited for the lock.

``GilFreeWriter`` wraps a plain TCP transport: while the transport has nothing queued, a write goes
straight to the socket by ``os.write`` (which releases the GIL); whatever the socket does not take at
once (or any error) goes to the transport's own ``write``, which queues it in order, applies
back-pressure and reports a broken connection as before. Writes are not held back to be merged: one
held until the end of the loop's turn waited behind the whole turn's work (``POST`` p50 +5 ms at
600 jobs/s).

TLS transports are never wrapped (their socket carries ciphertext, which only the transport can make).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


class GilFreeWriter(asyncio.Transport):
    """A plain TCP transport whose writes go to the socket with the GIL released."""

    def __init__(self, transport: asyncio.Transport, fd: int) -> None:
        super().__init__()
        self._transport = transport
        self._fd = fd

    @classmethod
    def wrap(cls, transport: asyncio.Transport) -> asyncio.Transport:
        """``transport`` wrapped, or as it is when it is not a plain socket transport (TLS, a pipe, a test)."""
        if transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("ssl_object") is not None:
            return transport
        sock = transport.get_extra_info("socket")
        fileno = getattr(sock, "fileno", None)
        if fileno is None:
            return transport
        fd = fileno()
        if not isinstance(fd, int) or fd < 0:
            return transport
        return cls(transport, fd)

    # -- writing ---------------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._transport.is_closing():
            return  # as the transport's own write does after close/abort
        sent = 0
        if self._transport.get_write_buffer_size() == 0:  # nothing queued ahead: straight to the socket
            try:
                sent = os.write(self._fd, data)
            except OSError:  # would block, or the connection broke: the transport handles either
                sent = 0
        if sent < len(data):
            self._transport.write(memoryview(data)[sent:])

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    # -- closing ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self._transport.close()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def abort(self) -> None:
        self._transport.abort()

    # -- the rest is the wrapped transport's -------------------------------------------------------------
    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()
