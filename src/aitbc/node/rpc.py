"""JSON-RPC 2.0 over HTTP: a method → handler map over ``NodeService``.

Standard codes: -32700 parse error, -32600 invalid request, -32601 method not
found, -32602 invalid params, -32603 internal error. Application codes:
-32001 tx rejected (``data.reason`` is the machine-readable reason),
-32004 not found. Batches are answered in order; notifications (no ``id``)
get no answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson

from aitbc.node.config import DEFAULT_MAX_BATCH, DEFAULT_MAX_REPLY_BYTES
from aitbc.node.rpc_base import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    JOB_ID_RE,
    MAX_HEIGHT,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    TX_REJECTED,
    RpcError,
    parse_address,
    parse_hash,
    parse_params,
)
from aitbc.node.rpc_base import Handler as RpcHandler
from aitbc.node.rpc_modules import MODULE_METHODS
from aitbc.node.service import NodeService, SubmitResult
from aitbc.protocol.errors import AitbcError, NotFound
from aitbc.protocol.tx import TX_TYPES, Tx
from aitbc.runtime.errors import rpc_code

log = logging.getLogger("aitbc.node.rpc")

Handler = RpcHandler


def parse_block_ref(value: Any) -> int | str:
    """A height (int or decimal string) or a 64-hex block hash."""
    if isinstance(value, bool):
        raise RpcError(INVALID_PARAMS, "block reference must be a height or a hash")
    if isinstance(value, str):
        # 64 characters is a hash even when every one is a digit; heights are ASCII decimal
        if len(value) != 64 and value.isascii() and value.isdigit():
            value = int(value)
        else:
            return parse_hash(value, "block")
    if isinstance(value, int):
        if not 0 <= value <= MAX_HEIGHT:
            raise RpcError(INVALID_PARAMS, f"height must be between 0 and {MAX_HEIGHT}")
        return value
    raise RpcError(INVALID_PARAMS, "block reference must be a height or a hash")


async def rpc_get_head(node: NodeService, params: Any) -> Any:
    parse_params(params, (), 0)
    return node.head_json()


async def rpc_get_chain_info(node: NodeService, params: Any) -> Any:
    parse_params(params, (), 0)
    return node.chain_info()


async def rpc_get_validators(node: NodeService, params: Any) -> Any:
    parse_params(params, (), 0)
    return node.validators_json()


async def rpc_get_block(node: NodeService, params: Any) -> Any:
    ref, include_txs = parse_params(params, ("block", "include_txs"), 1)
    block = node.get_block(parse_block_ref(ref))
    if block is None:
        raise RpcError(NOT_FOUND, f"no block {ref}")
    return node.block_json(block, include_txs=include_txs is not False)


async def rpc_get_tx(node: NodeService, params: Any) -> Any:
    (tx_hash,) = parse_params(params, ("tx_hash",), 1)
    found = node.get_tx(parse_hash(tx_hash, "tx_hash"))
    if found is None:
        raise RpcError(NOT_FOUND, f"no tx {tx_hash}", node.tx_status(tx_hash.lower()))
    return found


async def rpc_get_tx_status(node: NodeService, params: Any) -> Any:
    (tx_hash,) = parse_params(params, ("tx_hash",), 1)
    return node.tx_status(parse_hash(tx_hash, "tx_hash"))


async def rpc_get_account(node: NodeService, params: Any) -> Any:
    (address,) = parse_params(params, ("address",), 1)
    return node.account_json(parse_address(address))


async def rpc_get_account_proof(node: NodeService, params: Any) -> Any:
    (address,) = parse_params(params, ("address",), 1)
    return node.account_proof_json(parse_address(address))


async def rpc_send_tx(node: NodeService, params: Any) -> Any:
    (tx,) = parse_params(params, ("tx",), 1)
    (result,) = await node.submit([tx])
    if result.error is not None:
        raise RpcError(
            TX_REJECTED,
            f"tx rejected: {result.error.message}",
            {"reason": result.error.reason, "tx_hash": result.tx_hash},
        )
    return {"tx_hash": result.tx_hash, "status": "pending"}


def _job_id_param(value: Any) -> str:
    if not isinstance(value, str) or not JOB_ID_RE.match(value):
        raise RpcError(INVALID_PARAMS, "'job_id' must be 1-64 characters of letters, digits, '_' or '-'")
    return value


async def rpc_get_job(node: NodeService, params: Any) -> Any:
    (job_id,) = parse_params(params, ("job_id",), 1)
    found = node.job_json(_job_id_param(job_id))
    if found is None:
        raise RpcError(NOT_FOUND, f"no escrow for job {job_id}")
    return found


async def rpc_get_job_proof(node: NodeService, params: Any) -> Any:
    (job_id,) = parse_params(params, ("job_id",), 1)
    return node.job_proof_json(_job_id_param(job_id))


_DEPOSIT_ID_RE: Final = re.compile(r"^dep_[0-9a-f]{40}$")


async def rpc_get_deposit(node: NodeService, params: Any) -> Any:
    (deposit_id,) = parse_params(params, ("deposit_id",), 1)
    if not isinstance(deposit_id, str) or not _DEPOSIT_ID_RE.match(deposit_id):
        raise RpcError(INVALID_PARAMS, "'deposit_id' must be 'dep_' and 40 hex digits")
    found = node.deposit_json(deposit_id)
    if found is None:
        raise RpcError(NOT_FOUND, f"no deposit {deposit_id}")
    return found


async def rpc_get_paid_job(node: NodeService, params: Any) -> Any:
    (job_id,) = parse_params(params, ("job_id",), 1)
    return node.paid_job_json(_job_id_param(job_id))


MAX_EVENTS_PAGE: Final = 1_000


async def rpc_get_job_events(node: NodeService, params: Any) -> Any:
    after_seq, address, limit = parse_params(params, ("after_seq", "address", "limit"), 0)
    after_seq = 0 if after_seq is None else after_seq
    limit = MAX_EVENTS_PAGE if limit is None else limit
    if not isinstance(after_seq, int) or isinstance(after_seq, bool) or not 0 <= after_seq <= MAX_HEIGHT:
        raise RpcError(INVALID_PARAMS, "'after_seq' must be a non-negative integer (the last event_seq you saw)")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_EVENTS_PAGE:
        raise RpcError(INVALID_PARAMS, f"'limit' must be an integer from 1 to {MAX_EVENTS_PAGE}")
    return node.job_events_after(after_seq, None if address is None else parse_address(address), limit)


METHODS: Final[dict[str, Handler]] = {
    "get_head": rpc_get_head,
    "get_chain_info": rpc_get_chain_info,
    "get_block": rpc_get_block,
    "get_validators": rpc_get_validators,
    "get_tx": rpc_get_tx,
    "get_tx_status": rpc_get_tx_status,
    "get_account": rpc_get_account,
    "get_account_proof": rpc_get_account_proof,
    "send_tx": rpc_send_tx,
    "get_job": rpc_get_job,
    "get_job_proof": rpc_get_job_proof,
    "get_job_events": rpc_get_job_events,
    "get_deposit": rpc_get_deposit,
    "get_paid_job": rpc_get_paid_job,
    **MODULE_METHODS,
}


def _error(id_: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": id_}


def _check_request(request: Any) -> tuple[str, Any, Any, bool]:
    if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'invalid request: expected an object with "jsonrpc": "2.0"')
    method = request.get("method")
    if not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, "invalid request: 'method' must be a string")
    id_ = request.get("id")
    if (id_ is not None and not isinstance(id_, str | int)) or isinstance(id_, bool):
        raise RpcError(INVALID_REQUEST, "invalid request: 'id' must be a string, a number or null")
    return method, request.get("params"), id_, "id" in request


async def _call(node: NodeService, request: Any) -> dict[str, Any] | None:
    try:
        method, params, id_, wants_reply = _check_request(request)
    except RpcError as exc:
        return _error(request.get("id") if isinstance(request, dict) else None, exc)
    handler = METHODS.get(method)
    try:
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {method}")
        node.metrics.rpc_requests.labels(method).inc()
        result = await handler(node, params)
    except RpcError as exc:
        return _error(id_, exc) if wants_reply else None
    except AitbcError as exc:  # the one error -> JSON-RPC code mapping (aitbc.runtime.errors)
        data = None if isinstance(exc, NotFound) else exc.to_dict()
        return _error(id_, RpcError(rpc_code(exc), exc.message, data)) if wants_reply else None
    except Exception:
        log.exception("rpc handler failed", extra={"method": method})
        return _error(id_, RpcError(INTERNAL_ERROR, "internal error")) if wants_reply else None
    return {"jsonrpc": "2.0", "result": result, "id": id_} if wants_reply else None


async def _send_tx_batch(node: NodeService, requests: list[Any]) -> list[dict[str, Any] | None]:
    """Fast path for a batch of send_tx calls: one parallel verification pass for all of them."""
    ids: list[tuple[Any, bool]] = []
    txs: list[Any] = []
    for request in requests:
        _method, params, id_, wants_reply = _check_request(request)
        (tx,) = parse_params(params, ("tx",), 1)
        ids.append((id_, wants_reply))
        txs.append(tx)
    node.metrics.rpc_requests.labels("send_tx").inc(len(txs))
    return _send_tx_replies(ids, await node.submit(txs))


def _send_tx_replies(ids: Sequence[tuple[Any, bool]], results: list[SubmitResult]) -> list[dict[str, Any] | None]:
    replies: list[dict[str, Any] | None] = []
    for (id_, wants_reply), result in zip(ids, results, strict=True):
        if not wants_reply:
            replies.append(None)
        elif result.error is not None:
            replies.append(
                _error(
                    id_,
                    RpcError(
                        TX_REJECTED,
                        f"tx rejected: {result.error.message}",
                        {"reason": result.error.reason, "tx_hash": result.tx_hash},
                    ),
                )
            )
        else:
            replies.append({"jsonrpc": "2.0", "result": {"tx_hash": result.tx_hash, "status": "pending"}, "id": id_})
    return replies


# -- bulk submit: a batch of well-formed send_tx calls, decoded straight into txs ---------------------------
class _NoTx(msgspec.Struct, frozen=True, tag_field="type", tag="\x00"):
    """Never sent by anyone: as a member of the union it makes msgspec require the ``type`` tag, as
    ``tx_from_json_obj`` does (a lone tagged struct would accept an object without one)."""


_JsonRpcId = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | str | None
"""Ids orjson also reads as integers (it reads a larger one as a float, which is refused); an id up to
2**64 - 1 is fine too but takes the generic path."""


class _SendTxCall(msgspec.Struct, frozen=True):
    jsonrpc: Literal["2.0"]
    method: Literal["send_tx"]
    params: tuple[Tx | _NoTx]
    id: _JsonRpcId | msgspec.UnsetType = msgspec.UNSET


_send_tx_calls: Final = msgspec.json.Decoder(list[_SendTxCall])


def _decode_send_tx_batch(body: bytes, max_batch: int) -> list[_SendTxCall] | None:
    """The batch if it is a non-empty list of well-formed ``send_tx`` calls carrying valid txs, else None.

    That is the shape bulk submitters send; decoding it straight into typed txs skips the generic
    path's dicts. Anything else (a malformed or odd item anywhere) returns None and the body takes the
    generic path, which answers it exactly as before; the fast path only accepts what that path accepts.
    """
    if not body.startswith(b"["):
        return None
    try:
        calls = _send_tx_calls.decode(body)
    except Exception:  # any decode or validation failure: let the generic path answer it
        return None
    if not calls or len(calls) > max_batch:
        return None
    for call in calls:
        if not isinstance(call.params[0], TX_TYPES):
            return None
    return calls


async def _submit_send_tx_calls(node: NodeService, calls: list[_SendTxCall]) -> list[dict[str, Any] | None]:
    node.metrics.rpc_requests.labels("send_tx").inc(len(calls))
    txs: list[Any] = [call.params[0] for call in calls]
    results = await node.submit_txs(txs)
    ids = [(None if c.id is msgspec.UNSET else c.id, c.id is not msgspec.UNSET) for c in calls]
    return _send_tx_replies(ids, results)


@dataclass(frozen=True)
class RpcLimits:
    """How much one HTTP body may ask of the node (``NodeSettings.max_batch`` / ``max_reply_bytes``)."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES


@dataclass(frozen=True)
class RpcReply:
    """What to send back: ``body`` None means nothing (only notifications); ``status`` the HTTP status."""

    body: bytes | None
    status: int = 200


def _limit_error(message: str, **data: Any) -> RpcReply:
    return RpcReply(orjson.dumps(_error(None, RpcError(INVALID_REQUEST, message, data))), 413)


def _reply_too_large(limits: RpcLimits) -> RpcReply:
    return _limit_error(
        f"the reply would be larger than {limits.max_reply_bytes} bytes (max_reply_bytes); ask for less per call",
        reason="reply_too_large",
        limit="max_reply_bytes",
        max_bytes=limits.max_reply_bytes,
    )


def _encode_replies(replies: list[dict[str, Any] | None], limits: RpcLimits) -> RpcReply:
    parts: list[bytes] = []
    size = 2
    for reply in replies:
        if reply is None:
            continue
        part = orjson.dumps(reply)
        size += len(part) + 1
        if size > limits.max_reply_bytes:
            return _reply_too_large(limits)
        parts.append(part)
    return RpcReply(b"[" + b",".join(parts) + b"]" if parts else None)


async def handle_rpc_body(node: NodeService, body: bytes, limits: RpcLimits | None = None) -> RpcReply:
    """Answer one HTTP body within ``limits``: a batch of more than ``max_batch`` calls, or one whose
    encoded reply would pass ``max_reply_bytes``, is refused whole (413 and a JSON-RPC error), never cut.
    Replies are encoded one by one as they are made, so a refused batch never held more than the budget."""
    limits = limits or RpcLimits()
    calls = _decode_send_tx_batch(body, limits.max_batch)
    if calls is not None:
        return _encode_replies(await _submit_send_tx_calls(node, calls), limits)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return RpcReply(orjson.dumps(_error(None, RpcError(PARSE_ERROR, f"parse error: {exc}"))))
    if isinstance(payload, list):
        if not payload:
            return RpcReply(orjson.dumps(_error(None, RpcError(INVALID_REQUEST, "invalid request: empty batch"))))
        if len(payload) > limits.max_batch:
            return _limit_error(
                f"a batch of {len(payload)} calls; at most {limits.max_batch} (max_batch)",
                reason="batch_too_large",
                limit="max_batch",
                max_calls=limits.max_batch,
            )
        if all(isinstance(r, dict) and r.get("method") == "send_tx" for r in payload):
            try:
                return _encode_replies(await _send_tx_batch(node, payload), limits)
            except RpcError:
                pass
        parts: list[bytes] = []
        size = 2
        for request in payload:
            reply = await _call(node, request)
            if reply is None:
                continue
            part = orjson.dumps(reply)
            size += len(part) + 1
            if size > limits.max_reply_bytes:
                return _reply_too_large(limits)
            parts.append(part)
        return RpcReply(b"[" + b",".join(parts) + b"]" if parts else None)
    reply = await _call(node, payload)
    if reply is None:
        return RpcReply(None)
    encoded = orjson.dumps(reply)
    return _reply_too_large(limits) if len(encoded) > limits.max_reply_bytes else RpcReply(encoded)
