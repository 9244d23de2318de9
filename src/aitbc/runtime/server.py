"""Running an ASGI app under uvicorn the same way in every service."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
import uvloop


class GracefulServer(uvicorn.Server):
    """uvicorn that stops cleanly on SIGINT/SIGTERM and then exits 0 (it does not re-raise the signal).

    ``on_stop`` runs on the event loop as soon as a stop is asked for, before uvicorn waits for open
    requests: a service ends its long polls there, so the graceful wait is short and nothing is cancelled.
    """

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._on_stop is not None and not self.should_exit:
            self._on_stop()
        super().handle_exit(sig, frame)

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


def serve_forever(config: uvicorn.Config, on_stop: Callable[[], None] | None = None) -> None:
    uvloop.run(GracefulServer(config, on_stop).serve())
