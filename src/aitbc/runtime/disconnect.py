"""Noticing that an HTTP client went away while its request waits (a long poll).

Why: an ASGI server does not cancel a handler when its client disconnects; it only answers the handler's
next ``receive()`` with ``http.disconnect``. A long poll that never calls ``receive()`` again (it has read
its whole body) goes on waiting, and whatever it takes for the client is answered into a closed socket: a
coordinator's claim handed a batch of jobs to a miner that had been killed, and those jobs waited out a
lease that no one held. ``client_gone`` watches ``receive()`` beside the handler, so the handler can stop
waiting and give back what it took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.types import Receive


async def _until_disconnect(receive: Receive) -> None:
    with contextlib.suppress(Exception):  # a receive that fails: the connection is as good as gone
        while (await receive())["type"] != "http.disconnect":
            pass  # request bytes past the body (none for a body already read whole): keep watching


@contextlib.asynccontextmanager
async def client_gone(receive: Receive) -> AsyncIterator[asyncio.Future[None]]:
    """A future done once the request's client has disconnected, for a handler that has read its whole body
    (``receive`` then yields nothing but the disconnect). The watch ends with the block."""
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        yield watcher
    finally:
        watcher.cancel()
