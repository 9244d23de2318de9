"""The services' OpenAPI documents, straight from their ``create_app`` (no server, no network).

``aitbc web openapi --out web/openapi`` writes them; ``npm run gen:api`` in web/ turns them into the
app's typed clients and ``npm run check:api`` (CI) fails when the committed ones have drifted.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI


def _coordinator(tmp: Path) -> FastAPI:
    from aitbc.coordinator.app import create_app
    from aitbc.coordinator.config import CoordinatorSettings

    return create_app(CoordinatorSettings(data_dir=tmp / "coordinator"))


def _node(_: Path) -> FastAPI:
    from aitbc.node.http import create_http_app
    from aitbc.node.service import NodeService

    # The routes only use the node when a request comes in; the schema needs none.
    return create_http_app(cast(NodeService, None))


def _poolhub(tmp: Path) -> FastAPI:
    from aitbc.poolhub.app import create_app
    from aitbc.poolhub.config import PoolHubSettings

    return create_app(PoolHubSettings(data_dir=tmp / "poolhub"))


def _exchange(tmp: Path) -> FastAPI:
    from aitbc.exchange.app import create_app
    from aitbc.exchange.config import ExchangeSettings

    return create_app(ExchangeSettings(data_dir=tmp / "exchange"))


SERVICES: dict[str, Callable[[Path], FastAPI]] = {
    "coordinator": _coordinator,
    "node": _node,
    "poolhub": _poolhub,
    "exchange": _exchange,
}


def service_openapi() -> dict[str, dict[str, Any]]:
    """Each service's OpenAPI document, by service name."""
    with tempfile.TemporaryDirectory(prefix="aitbc-openapi-") as tmp:
        return {name: build(Path(tmp)).openapi() for name, build in SERVICES.items()}


def write_openapi(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in service_openapi().items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        written.append(path)
    return written
