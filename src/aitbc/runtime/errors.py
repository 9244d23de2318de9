"""The one error→HTTP and error→JSON-RPC mapping: what every service answers for an ``AitbcError``.

The status and code of each error are declared on its class in ``aitbc.protocol.errors`` (the tree in
that module's docstring); this module reads them and builds the one problem body. The only case not
decided by the class alone: a ``RemoteError`` that carries the node's "tx rejected" code passes that
rejection on (the caller's tx is at fault), where any other remote failure is a 502.
"""

from __future__ import annotations

from typing import Any, Final

from aitbc.protocol.errors import AitbcError, InvalidTx, RateLimited, RemoteError

TX_REJECTED: Final = InvalidTx.rpc_code


def http_status(exc: AitbcError) -> int:
    if isinstance(exc, RemoteError) and exc.code == TX_REJECTED:
        return InvalidTx.http_status
    return exc.http_status


def rpc_code(exc: AitbcError) -> int:
    if isinstance(exc, RemoteError) and exc.code == TX_REJECTED:
        return TX_REJECTED
    return exc.rpc_code


def error_body(exc: AitbcError) -> dict[str, Any]:
    """``{"error": {"reason", "message", …}}`` (with ``retry_after_s`` for a rate limit)."""
    data = exc.to_dict()
    if isinstance(exc, RateLimited):
        data["retry_after_s"] = round(exc.retry_after, 2)
    return {"error": data}


def error_headers(exc: AitbcError) -> dict[str, str] | None:
    """``Retry-After`` for a rate limit: the seconds until a request passes again, to the hundredth."""
    if isinstance(exc, RateLimited):
        return {"Retry-After": f"{exc.retry_after:.2f}"}
    return None
