"""``BodyLimit`` driven as plain ASGI: no socket, the app records whether it ever ran."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from aitbc.runtime.limits import BodyLimit, HttpServerSettings

LIMITS = HttpServerSettings(max_body_bytes=2048, body_timeout_s=0.2)


class Recorder:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _scope(headers: list[tuple[bytes, bytes]], path: str = "/x") -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


def _run(layer: BodyLimit, scope: Scope, chunks: list[bytes], stall: bool = False) -> list[Message]:
    sent: list[Message] = []
    pending = chunks  # consumed in place: a test can see what was never read

    async def receive() -> Message:
        if not pending:
            if stall:
                await asyncio.sleep(10)
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending) or stall}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(layer(scope, receive, send))
    return sent


def _status_and_error(sent: list[Message]) -> tuple[int, Any]:
    return sent[0]["status"], orjson.loads(sent[1]["body"])["error"]


def test_declared_length_over_the_limit_is_413_without_reading() -> None:
    app = Recorder()
    sent = _run(BodyLimit(app, LIMITS), _scope([(b"content-length", b"999999")]), [])
    status, error = _status_and_error(sent)
    assert status == 413 and error["reason"] == "too_large" and error["max_bytes"] == 2048
    assert app.bodies == []


def test_chunked_body_is_cut_off_once_past_the_limit() -> None:
    app = Recorder()
    chunks = [b"x" * 1000] * 50
    sent = _run(BodyLimit(app, LIMITS), _scope([(b"transfer-encoding", b"chunked")]), chunks)
    assert _status_and_error(sent)[0] == 413
    assert app.bodies == []
    assert len(chunks) == 47  # three chunks read (3,000 bytes > 2,048), the rest never asked for


def test_body_within_the_limit_reaches_the_app_whole() -> None:
    app = Recorder()
    sent = _run(BodyLimit(app, LIMITS), _scope([(b"transfer-encoding", b"chunked")]), [b"a" * 1000, b"b" * 1000])
    assert sent[0]["status"] == 200
    assert app.bodies == [b"a" * 1000 + b"b" * 1000]


def test_json_rpc_paths_get_a_json_rpc_error() -> None:
    sent = _run(BodyLimit(Recorder(), LIMITS, rpc_paths={"/"}), _scope([(b"content-length", b"5000")], "/"), [])
    reply = orjson.loads(sent[1]["body"])
    assert reply["jsonrpc"] == "2.0" and reply["id"] is None
    assert reply["error"]["code"] == -32600 and reply["error"]["data"]["limit"] == "max_body_bytes"


def test_a_body_that_stalls_is_408() -> None:
    app = Recorder()
    rejected: list[str] = []
    layer = BodyLimit(app, LIMITS, on_reject=rejected.append)
    sent = _run(layer, _scope([(b"content-length", b"100")]), [b"x" * 10], stall=True)
    status, error = _status_and_error(sent)
    assert status == 408 and error["limit"] == "body_timeout_s"
    assert rejected == ["body_timeout"] and app.bodies == []


def test_no_body_passes_straight_through() -> None:
    app = Recorder()
    _run(BodyLimit(app, LIMITS), _scope([]), [b""])
    assert app.bodies == [b""]
