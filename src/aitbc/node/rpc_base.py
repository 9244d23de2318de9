"""The JSON-RPC pieces every group of methods shares: error codes, ``RpcError``, param parsing."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aitbc.node.service import NodeService
from aitbc.protocol.address import decode_address
from aitbc.protocol.errors import InvalidAddress

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
TX_REJECTED: Final = -32001
NOT_FOUND: Final = -32004

JOB_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_HEIGHT: Final = 2**63 - 1  # SQLite INTEGER
_HASH_RE: Final = re.compile(r"^[0-9a-f]{64}$")


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def parse_params(params: Any, names: tuple[str, ...], required: int) -> list[Any]:
    """Positional or named params → a list of ``len(names)`` values (missing optional ones are None)."""
    if params is None:
        params = []
    if isinstance(params, dict):
        unknown = set(params) - set(names)
        if unknown:
            raise RpcError(INVALID_PARAMS, f"unknown params: {', '.join(sorted(unknown))}")
        values = [params.get(n) for n in names]
    elif isinstance(params, list):
        if len(params) > len(names):
            raise RpcError(INVALID_PARAMS, f"expected at most {len(names)} params, got {len(params)}")
        values = list(params) + [None] * (len(names) - len(params))
    else:
        raise RpcError(INVALID_PARAMS, "params must be an array or an object")
    for name, value in zip(names[:required], values[:required], strict=True):
        if value is None:
            raise RpcError(INVALID_PARAMS, f"missing param '{name}'")
    return values


def parse_hash(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _HASH_RE.match(value.lower()):
        raise RpcError(INVALID_PARAMS, f"'{name}' must be a 64-character hex hash")
    return value.lower()


def parse_address(value: Any) -> str:
    if not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, "'address' must be a string")
    try:
        decode_address(value)
    except InvalidAddress as exc:
        raise RpcError(INVALID_PARAMS, f"invalid address: {exc.message}") from None
    return value


Handler = Callable[[NodeService, Any], Awaitable[Any]]
