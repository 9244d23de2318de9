"""Cross-origin access for browser apps (the web app on :8015), driven by settings.

Every service's settings carry ``cors_origins`` (``AITBC_<SERVICE>_CORS_ORIGINS='["http://127.0.0.1:8015"]'``);
empty (the default) adds nothing, so browsers on other origins are refused as before. Only the listed
origins get ``Access-Control-Allow-Origin``; no credentials (cookies) are ever allowed: clients
authenticate with headers (``X-Api-Key``, ``Authorization``), which a preflight must name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

ALLOWED_HEADERS: Final = ("Content-Type", "X-Api-Key", "Authorization", "Last-Event-ID")
PREFLIGHT_MAX_AGE_S: Final = 600


def add_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Answer preflights and tag responses for ``origins`` (nothing when the list is empty)."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_credentials=False,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=list(ALLOWED_HEADERS),
        max_age=PREFLIGHT_MAX_AGE_S,
    )
