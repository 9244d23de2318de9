"""Request bodies as protocol messages: decoded by msgspec, documented from the same structs.

FastAPI knows pydantic, not msgspec. A route takes its body as ``Body[JobRequest]``-style dependency
(``json_body``), which decodes the raw bytes straight into the message struct of
``aitbc.protocol.job_messages`` (a violated limit is ``InvalidRequest``, HTTP 422 naming the field),
and declares it with ``openapi_body``, which points the OpenAPI request body at the schema msgspec
generates from that struct (``message_schemas``). So /openapi.json shows exactly the limits the
decoder enforces: there is no second declaration to drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from fastapi import Request

from aitbc.protocol.job_messages import REQUEST_MESSAGES, JobAssignment, JobAssignments, decode_message
from aitbc.protocol.openai_messages import OPENAI_REQUESTS

M = TypeVar("M")

REF_TEMPLATE = "#/components/schemas/{name}"


def json_body(kind: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A FastAPI dependency that decodes the request body into ``kind``."""

    async def decode(request: Request) -> M:
        return decode_message(kind, await request.body())

    return decode


def openapi_body(kind: type[Any]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is ``kind`` (its schema is among ``message_schemas``)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(name=kind.__name__)}}},
        }
    }


def message_schemas() -> dict[str, Any]:
    """OpenAPI component schemas of every request message (the OpenAI-compatible ones too) and of the miner's
    assignments."""
    kinds = (*REQUEST_MESSAGES, *OPENAI_REQUESTS, JobAssignment, JobAssignments)
    _, components = msgspec.json.schema_components(kinds, ref_template=REF_TEMPLATE)
    return components
