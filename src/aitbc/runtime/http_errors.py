"""The one way an HTTP service renders its errors: an ``AitbcError`` through ``aitbc.runtime.errors``
(status from the error's class, the one problem body) and a request that breaks its schema as a 422
``invalid_request`` naming the fields. Every FastAPI service installs these instead of writing its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from aitbc.protocol.errors import AitbcError
from aitbc.runtime.errors import error_body, error_headers, http_status

MAX_DETAILS_IN_MESSAGE = 5
"""How many field errors the one-line message names (all of them are in ``details``)."""


def render_aitbc_error(exc: AitbcError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=http_status(exc), headers=error_headers(exc))


def render_validation_error(exc: RequestValidationError) -> JSONResponse:
    """422 with each failing field's path; the input itself is never echoed (a NaN in it is not JSON)."""
    details: list[dict[str, Any]] = [
        {"loc": [str(part) for part in error.get("loc", ())], "message": error.get("msg", "")} for error in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(d['loc'][1:])}: {d['message']}" for d in details[:MAX_DETAILS_IN_MESSAGE])
    body = {"error": {"reason": "invalid_request", "message": summary, "details": details}}
    return JSONResponse(body, status_code=422)


def install_error_handlers(
    app: FastAPI, count: Callable[[str], None] | None = None, *, aitbc_errors: bool = True
) -> None:
    """Render errors the one way; ``count(reason)`` is called per rejection (a service's metrics counter).

    ``aitbc_errors=False`` leaves ``AitbcError`` to a service that must render some of them in another
    protocol's shape (the coordinator's OpenAI routes), installing only the validation handler.
    """
    counted = count or (lambda _reason: None)

    if aitbc_errors:

        @app.exception_handler(AitbcError)
        async def on_aitbc_error(_: Request, exc: AitbcError) -> JSONResponse:
            counted(exc.reason)
            return render_aitbc_error(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        counted("invalid_request")
        return render_validation_error(exc)
