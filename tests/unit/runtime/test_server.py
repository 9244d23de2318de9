"""The one server runner (``aitbc.runtime.server``): bind, announce, limits from the service's settings."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from aitbc.protocol.errors import ConfigError
from aitbc.runtime.limits import BodyLimit, GuardedConfig, HttpServerSettings
from aitbc.runtime.server import (
    FULL_COLLECTION_EVERY,
    announce,
    bind_socket,
    build_server,
    quiet_full_collections,
    read_announcement,
)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("hello")(scope, receive, send)


def test_port_zero_is_bound_then_announced(tmp_path: Path) -> None:
    sock = bind_socket("127.0.0.1", 0, "test")
    try:
        port = sock.getsockname()[1]
        assert port != 0
        path = tmp_path / "sub" / "announce.json"
        url = announce("test", sock, path, extra=1)
        assert url == f"http://127.0.0.1:{port}"
        assert read_announcement(path) == {
            "service": "test",
            "host": "127.0.0.1",
            "port": port,
            "url": url,
            "pid": os.getpid(),
            "extra": 1,
        }
        # a busy port is one clear error naming what could not listen
        with pytest.raises(ConfigError, match=f"cannot listen for the API on 127.0.0.1:{port}"):
            bind_socket("127.0.0.1", port, "the API")
    finally:
        sock.close()
    assert read_announcement(tmp_path / "nothing.json") is None


def test_the_server_takes_every_limit_from_the_settings_object() -> None:
    settings = HttpServerSettings(max_body_bytes=2048, idle_timeout_s=7.0, max_connections=3)
    server = build_server(hello, settings)
    config = server.config
    assert isinstance(config, GuardedConfig) and config.limits is settings
    assert isinstance(config.app, BodyLimit) and config.app.max_body_bytes == 2048
    assert config.timeout_keep_alive == 7


def test_a_built_server_serves_on_the_bound_socket() -> None:
    sock = bind_socket("127.0.0.1", 0, "test")
    port = sock.getsockname()[1]
    server = build_server(hello, HttpServerSettings(max_body_bytes=1024), own_signals=False, lifespan="off")

    async def scenario() -> tuple[int, str, int]:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            ok = await client.get("/")
            too_large = await client.post("/", content=b"x" * 2048)
        server.should_exit = True
        await task
        return ok.status_code, ok.text, too_large.status_code

    assert asyncio.run(scenario()) == (200, "hello", 413)


def test_quiet_full_collections_freezes_the_loaded_app_and_spaces_out_full_collections() -> None:
    before = gc.get_threshold()
    try:
        quiet_full_collections()
        assert gc.get_threshold() == (before[0], before[1], FULL_COLLECTION_EVERY)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
