"""Running an ASGI app under uvicorn the same way in every service."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
import uvloop


class GracefulServer(uvicorn.Server):
    """uvicorn that stops cleanly on SIGINT/SIGTERM and then exits 0 (it does not re-raise the signal)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def serve_forever(config: uvicorn.Config) -> None:
    uvloop.run(GracefulServer(config).serve())
