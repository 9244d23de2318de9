"""A small, real HTTP server that speaks Ollama's API in front of any InferenceBackend.

No Ollama binary can be installed here, so the ``ollama`` backend is tested against this: a
stdlib ``ThreadingHTTPServer`` implementing the endpoints the backend uses, with Ollama's wire
formats — ``GET /api/tags``, ``POST /api/show``, ``POST /api/generate`` and ``POST /api/chat``
(NDJSON streamed with chunked transfer encoding, one line per token, a final ``done`` line with
``done_reason``, ``prompt_eval_count``, ``eval_count`` and durations; ``"stream": false`` gives
one JSON object), ``POST /api/embed``, and Ollama's ``{"error": "..."}`` bodies (404 for an
unknown model, 400 for a bad request).

Models are listed as ``<name>:latest``. Like real Ollama, ``/api/tags`` reports a manifest
digest while ``/api/show``'s modelfile names the weights blob ``sha256-<hex>`` — here the
backend's own weights digest, so the ``ollama`` backend must find the same digest as the
builtin one.

In tests: ``with serve_ollama(BuiltinBackend()) as url: ...``. By hand (for a devnet demo):
``python tests/support/ollama_server.py --port 11434``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aitbc.miner.backends.base import (
    BackendError,
    ChatMessage,
    GenerationParams,
    GenerationResult,
    InferenceBackend,
    ModelInfo,
    ModelNotServed,
)


class _BadRequest(Exception):
    pass


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class OllamaAPIServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: InferenceBackend) -> None:
        super().__init__(address, OllamaHandler)
        self.backend = backend
        self._models: dict[str, ModelInfo] | None = None
        self._lock = threading.Lock()

    def models(self) -> dict[str, ModelInfo]:
        with self._lock:
            if self._models is None:
                self._models = {m.name: m for m in self.backend.list_models()}
            return self._models

    def lookup(self, name: object) -> ModelInfo:
        if not isinstance(name, str) or not name:
            raise _BadRequest("model is required")
        info = self.models().get(name.removesuffix(":latest"))
        if info is None:
            raise ModelNotServed(f"model '{name}' not found, try pulling it first")
        return info

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class OllamaHandler(BaseHTTPRequestHandler):
    server: OllamaAPIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------------------

    def _send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            raise _BadRequest(f"invalid JSON: {e}") from e
        if not isinstance(body, dict):
            raise _BadRequest("request body must be a JSON object")
        return body

    def _start_stream(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, obj: object) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _dispatch(self, routes: dict[str, Any]) -> None:
        handler = routes.get(self.path.split("?", 1)[0])
        if handler is None:
            self._error(HTTPStatus.NOT_FOUND, "404 page not found")
            return
        try:
            handler()
        except _BadRequest as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
        except ModelNotServed as e:
            self._error(HTTPStatus.NOT_FOUND, str(e))
        except BackendError as e:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(e))

    def do_GET(self) -> None:
        self._dispatch({"/api/tags": self._tags, "/api/version": self._version, "/": self._root})

    def do_HEAD(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self._dispatch(
            {
                "/api/show": self._show,
                "/api/generate": self._generate,
                "/api/chat": self._chat,
                "/api/embed": self._embed,
            }
        )

    # -- endpoints --------------------------------------------------------------------------

    def _root(self) -> None:
        data = b"Ollama is running"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _version(self) -> None:
        self._send_json(HTTPStatus.OK, {"version": "0.0.0-aitbc-test"})

    @staticmethod
    def _details(info: ModelInfo) -> dict[str, Any]:
        family = "bert" if info.kind == "embedding" else "llama"
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "",
            "quantization_level": "",
        }

    @staticmethod
    def _manifest_digest(info: ModelInfo) -> str:
        manifest = json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": info.digest}]})
        return hashlib.sha256(manifest.encode()).hexdigest()

    def _tags(self) -> None:
        models = [
            {
                "name": f"{info.name}:latest",
                "model": f"{info.name}:latest",
                "modified_at": _now(),
                "size": 0,
                "digest": self._manifest_digest(info),
                "details": self._details(info),
            }
            for info in self.server.models().values()
        ]
        self._send_json(HTTPStatus.OK, {"models": models})

    def _show(self) -> None:
        body = self._body()
        info = self.server.lookup(body.get("model") or body.get("name"))
        blob = info.digest.removeprefix("sha256:")
        arch = "bert" if info.kind == "embedding" else "llama"
        model_info: dict[str, Any] = {"general.architecture": arch}
        if info.context_length:
            model_info[f"{arch}.context_length"] = info.context_length
        if info.dimensions:
            model_info[f"{arch}.embedding_length"] = info.dimensions
        self._send_json(
            HTTPStatus.OK,
            {
                "modelfile": (
                    f'# Modelfile generated by "ollama show"\nFROM /root/.ollama/models/blobs/sha256-{blob}\n'
                ),
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": self._details(info),
                "model_info": model_info,
                "capabilities": ["embedding"] if info.kind == "embedding" else ["completion"],
                "modified_at": _now(),
            },
        )

    @staticmethod
    def _params(body: dict[str, Any]) -> GenerationParams:
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise _BadRequest("options must be an object")
        stop = options.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        try:
            return GenerationParams(
                max_tokens=int(options.get("num_predict", 128)),
                temperature=float(options.get("temperature", 0.8)),
                seed=int(options["seed"]) if options.get("seed") is not None else None,
                stop=tuple(str(s) for s in stop),
            )
        except (TypeError, ValueError) as e:
            raise _BadRequest(f"bad options: {e}") from e

    def _run(self, body: dict[str, Any], *, chat: bool) -> None:
        info = self.server.lookup(body.get("model"))
        if info.kind != "text":
            raise _BadRequest(f'"{info.name}" does not support {"chat" if chat else "generate"}')
        params = self._params(body)
        prompt: str | None = None
        messages: list[ChatMessage] | None = None
        if chat:
            raw = body.get("messages")
            if not isinstance(raw, list) or not raw:
                raise _BadRequest("messages must be a non-empty list")
            try:
                messages = [ChatMessage(role=m["role"], content=str(m["content"])) for m in raw]
            except (KeyError, TypeError) as e:
                raise _BadRequest(f"bad message: {e}") from e
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise _BadRequest("prompt must be a string")
        name = f"{info.name}:latest"
        stream = body.get("stream", True) is not False
        started = time.perf_counter_ns()

        def piece_obj(piece: str) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": name, "created_at": _now()}
            if chat:
                obj["message"] = {"role": "assistant", "content": piece}
            else:
                obj["response"] = piece
            obj["done"] = False
            return obj

        def final_obj(result: GenerationResult, text: str) -> dict[str, Any]:
            obj = piece_obj(text)
            total = time.perf_counter_ns() - started
            obj.update(
                done=True,
                done_reason=result.finish_reason,
                total_duration=total,
                load_duration=0,
                prompt_eval_count=result.prompt_tokens,
                prompt_eval_duration=0,
                eval_count=result.completion_tokens,
                eval_duration=total,
            )
            if not chat:
                obj["context"] = []
            return obj

        if not stream:
            result = self.server.backend.generate(info.name, prompt=prompt, messages=messages, params=params)
            self._send_json(HTTPStatus.OK, final_obj(result, result.text))
            return
        # Stream: the first token decides the status line, so errors before it are plain HTTP
        # errors, and errors after it are an {"error": ...} line, as Ollama does.
        started_stream = False

        def on_token(piece: str) -> None:
            nonlocal started_stream
            if not started_stream:
                self._start_stream()
                started_stream = True
            self._chunk(piece_obj(piece))

        try:
            result = self.server.backend.generate(
                info.name, prompt=prompt, messages=messages, params=params, on_token=on_token
            )
        except BackendError as e:
            if not started_stream:
                raise
            self._chunk({"error": str(e)})
            self._end_stream()
            return
        if not started_stream:
            self._start_stream()
        self._chunk(final_obj(result, ""))
        self._end_stream()

    def _generate(self) -> None:
        self._run(self._body(), chat=False)

    def _chat(self) -> None:
        self._run(self._body(), chat=True)

    def _embed(self) -> None:
        body = self._body()
        info = self.server.lookup(body.get("model"))
        if info.kind != "embedding":
            raise _BadRequest(f'"{info.name}" does not support embeddings')
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise _BadRequest("input must be a string or a list of strings")
        started = time.perf_counter_ns()
        result = self.server.backend.embed(info.name, texts)
        self._send_json(
            HTTPStatus.OK,
            {
                "model": f"{info.name}:latest",
                "embeddings": result.vectors,
                "total_duration": time.perf_counter_ns() - started,
                "load_duration": 0,
                "prompt_eval_count": result.prompt_tokens,
            },
        )


@contextlib.contextmanager
def serve_ollama(backend: InferenceBackend, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``backend`` over Ollama's API on a background thread; yields the base URL.

    ``port=0`` lets the kernel pick a free port (no race with other test runs).
    """
    server = OllamaAPIServer((host, port), backend)
    thread = threading.Thread(target=server.serve_forever, name="ollama-api", daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description="Ollama-API server in front of AITBC's builtin backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    args = parser.parse_args()
    from aitbc.miner.backends.builtin import BuiltinBackend

    backend = BuiltinBackend()
    server = OllamaAPIServer((args.host, args.port), backend)
    print(f"Ollama API on {server.url} serving {[m.name for m in backend.list_models()]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        backend.close()


if __name__ == "__main__":
    main()
