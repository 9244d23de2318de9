"""``create_app(settings)``: the built web app as static files, its ``/config.json`` and ``/healthz``.

The app is a static bundle (hashed assets under ``/assets``, cached for good; ``index.html`` never
cached). It talks to the services directly from the browser — they must list this server's origin in
their ``cors_origins`` (the devnet does) — so this process holds no secret and proxies nothing. The
Content-Security-Policy allows connections to exactly the configured services.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aitbc.protocol.errors import ConfigError
from aitbc.web.config import WebSettings


class NotBuilt(ConfigError):
    """The app's static files are missing: it has to be built first."""


def check_built(settings: WebSettings) -> None:
    index = settings.dist_dir / "index.html"
    if not index.is_file():
        raise NotBuilt(
            f"the web app is not built ({index} is missing): run `make web` "
            "(or `npm ci && npm run build` in web/), or point --dist at a built app"
        )


def content_security_policy(settings: WebSettings) -> str:
    connect = " ".join(["'self'", *settings.connect_origins()])
    return (
        "default-src 'self'; "
        f"connect-src {connect}; "
        "img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )


class SecurityHeaders:
    """CSP and friends on every answer; long caching for the content-hashed assets only."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        immutable = str(scope.get("path", "")).startswith("/assets/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control"]
                cache = b"public, max-age=31536000, immutable" if immutable else b"no-cache"
                message["headers"] = [*headers, *self.headers, (b"cache-control", cache)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: WebSettings) -> ASGIApp:
    check_built(settings)
    config: dict[str, Any] = {**settings.service_urls(), "chain_id": settings.chain_id}

    async def config_json(_: Request) -> Response:
        return JSONResponse(config)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "dist": str(settings.dist_dir)})

    app = Starlette(
        routes=[
            Route("/config.json", config_json),
            Route("/healthz", healthz),
            Mount("/", StaticFiles(directory=settings.dist_dir, html=True)),
        ]
    )
    return SecurityHeaders(app, content_security_policy(settings))


def run_web(settings: WebSettings) -> None:
    from aitbc.runtime.server import bind_socket, serve
    from aitbc.runtime.tls import server_tls

    server_tls(settings)  # a missing certificate or plain HTTP off loopback fails before anything starts
    sock = bind_socket(settings.host, settings.port, "the web app")
    serve("web", create_app(settings), settings, sock)
