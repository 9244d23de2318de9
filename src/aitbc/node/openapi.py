"""The node's OpenAPI document: the tx kinds and the JSON-RPC envelope, generated from the protocol structs.

``POST /v1/txs`` and JSON-RPC ``send_tx`` take one signed tx as JSON; its schema is msgspec's schema of
the ``Tx`` union (one component per kind, discriminated by ``type``), so /openapi.json always shows the
fields and limits the decoder enforces. docs/transactions.md explains the canonical bytes and signing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from aitbc.protocol.tx import Tx

REF: Final = "#/components/schemas/{name}"


def tx_component_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of one tx (a ``type``-discriminated union) and the components it refers to."""
    (tx_schema,), components = msgspec.json.schema_components([Tx], ref_template=REF)
    return tx_schema, components


def tx_request_body() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /v1/txs``."""
    tx_schema, _ = tx_component_schemas()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": tx_schema}}}}


def rpc_request_body(methods: Iterable[str]) -> dict[str, Any]:
    """``openapi_extra`` of the JSON-RPC endpoint: one request or a batch; ``send_tx`` takes ``[tx]``."""
    tx_schema, _ = tx_component_schemas()
    request = {
        "type": "object",
        "required": ["jsonrpc", "method", "id"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "method": {"enum": sorted(methods)},
            "params": {
                "description": "By position or by name. send_tx: [tx], the tx as in POST /v1/txs.",
                "anyOf": [
                    {"type": "array", "prefixItems": [tx_schema], "minItems": 1, "maxItems": 1},
                    {"type": "array"},
                    {"type": "object"},
                ],
            },
            "id": {"description": "Echoed in the reply; omit it for a notification (no reply)."},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"anyOf": [request, {"type": "array", "items": request}]}}},
        }
    }


def with_tx_components(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document plus the tx components the two bodies above refer to."""
    _, components = tx_component_schemas()
    schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
    return schema
