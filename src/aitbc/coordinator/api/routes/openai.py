"""OpenAI-compatible routes under ``/v1``: models, chat completions, completions, embeddings.

Bodies are decoded straight into ``aitbc.protocol.openai_messages`` structs (400 naming the field),
each request runs as one job through ``OpenAIGateway`` (``aitbc.coordinator.openai_gateway``), and
every error on these paths has OpenAI's shape (the app's error handler picks it by path). Auth:
``Authorization: Bearer <api key>`` or ``X-Api-Key``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aitbc.coordinator.api.body import json_body, openapi_body
from aitbc.coordinator.api.deps import Service
from aitbc.coordinator.auth import ApiKey
from aitbc.coordinator.openai_gateway import (
    SSE_DONE,
    SSE_KEEPALIVE,
    JobRun,
    OpenAIGateway,
    embedding_list,
    job_headers,
    openai_error,
    sse,
)
from aitbc.protocol.errors import AitbcError, UnknownModel
from aitbc.protocol.openai_messages import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    EmbeddingRequest,
    ErrorBody,
    ErrorDetail,
    FinishReason,
    Usage,
    compute_chat_job,
    compute_completion_job,
    compute_embedding_job,
    compute_finish_reason,
)

router = APIRouter(prefix="/v1", tags=["openai"])

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "invalid_request_error (param names the field; n other than 1)"},
    401: {"description": "invalid_api_key"},
    402: {"description": "insufficient_quota: the key's deposit cannot cover the job's worst case"},
    404: {"description": "model_not_found: no live miner serves the model"},
    429: {"description": "rate_limit_exceeded (Retry-After) or too_many_open_requests"},
}
_STREAM: Final[dict[int | str, dict[str, Any]]] = {
    200: {"description": "JSON, or with stream=true server-sent events: `data: {chunk}` lines, then `data: [DONE]`"}
}


async def get_gateway(request: Request) -> OpenAIGateway:
    gateway: OpenAIGateway = request.app.state.openai
    return gateway


Gateway = Annotated[OpenAIGateway, Depends(get_gateway)]


async def get_openai_client(
    service: Service,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> ApiKey:
    """The caller's API key, from ``Authorization: Bearer …`` (what OpenAI clients send) or ``X-Api-Key``."""
    token = x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    return await service.authenticate_client_async(token)


OpenAIClient = Annotated[ApiKey, Depends(get_openai_client)]
ChatBody = Annotated[ChatCompletionRequest, Depends(json_body(ChatCompletionRequest))]
CompletionBody = Annotated[CompletionRequest, Depends(json_body(CompletionRequest))]
EmbeddingBody = Annotated[EmbeddingRequest, Depends(json_body(EmbeddingRequest))]


def _json(message: msgspec.Struct, job_id: str) -> Response:
    return Response(msgspec.json.encode(message), media_type="application/json", headers=job_headers(job_id))


@router.get("/models", summary="Models live miners serve (OpenAI list shape), with their digests and miners")
async def list_models(client: OpenAIClient, gateway: Gateway) -> Response:
    return Response(msgspec.json.encode(gateway.models()), media_type="application/json")


@router.get("/models/{model_id:path}", summary="One model live miners serve (404 model_not_found if none)")
async def retrieve_model(model_id: str, client: OpenAIClient, gateway: Gateway) -> Response:
    card = next((c for c in gateway.models().data if c.id == model_id), None)
    if card is None:
        raise UnknownModel(f"no live miner serves model {model_id!r}")
    return Response(msgspec.json.encode(card), media_type="application/json")


@router.post(
    "/chat/completions",
    summary="Chat completion, run as one paid job (stream=true: server-sent events)",
    openapi_extra=openapi_body(ChatCompletionRequest),
    responses={**_STREAM, **_ERRORS},
)
async def chat_completions(client: OpenAIClient, gateway: Gateway, body: ChatBody) -> Response:
    job = compute_chat_job(body)
    max_tokens = job.params.max_tokens
    run = await gateway.start(client, job)
    if body.stream:

        def chunk(content: str | None, finish: FinishReason | None, fingerprint: str | None) -> ChatCompletionChunk:
            delta = ChunkDelta() if content is None else ChunkDelta(content=content)
            return ChatCompletionChunk(
                id=run.job_id,
                created=run.created,
                model=body.model,
                system_fingerprint=fingerprint,
                choices=[ChunkChoice(delta=delta, finish_reason=finish)],
                usage=None if body.include_usage else msgspec.UNSET,
            )

        def usage_chunk(usage: Usage, fingerprint: str | None) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=run.job_id,
                created=run.created,
                model=body.model,
                system_fingerprint=fingerprint,
                choices=[],
                usage=usage,
            )

        first = ChatCompletionChunk(
            id=run.job_id,
            created=run.created,
            model=body.model,
            system_fingerprint=None,
            choices=[ChunkChoice(delta=ChunkDelta(role="assistant", content=""))],
            usage=None if body.include_usage else msgspec.UNSET,
        )
        events = _stream(gateway, client, run, max_tokens, body.include_usage, chunk, usage_chunk, sse(first))
        return JobEventStream(events, run)
    try:
        record, usage = await gateway.finish(client, run)
    finally:
        run.close()
    text = (record.result.text if record.result else None) or ""
    reply = ChatCompletion(
        id=run.job_id,
        created=run.created,
        model=body.model,
        system_fingerprint=record.served_digest,
        choices=[
            ChatChoice(
                message=AssistantMessage(content=text),
                finish_reason=compute_finish_reason(usage.completion_tokens, max_tokens),
            )
        ],
        usage=usage,
    )
    return _json(reply, run.job_id)


@router.post(
    "/completions",
    summary="Text completion of one prompt string, run as one paid job (stream=true: server-sent events)",
    openapi_extra=openapi_body(CompletionRequest),
    responses={**_STREAM, **_ERRORS},
)
async def completions(client: OpenAIClient, gateway: Gateway, body: CompletionBody) -> Response:
    job = compute_completion_job(body)
    max_tokens = job.params.max_tokens
    run = await gateway.start(client, job)

    def chunk(content: str | None, finish: FinishReason | None, fingerprint: str | None) -> Completion:
        return Completion(
            id=run.job_id,
            created=run.created,
            model=body.model,
            system_fingerprint=fingerprint,
            choices=[CompletionChoice(text=content or "", finish_reason=finish)],
        )

    if body.stream:

        def usage_chunk(usage: Usage, fingerprint: str | None) -> Completion:
            return Completion(
                id=run.job_id,
                created=run.created,
                model=body.model,
                system_fingerprint=fingerprint,
                choices=[],
                usage=usage,
            )

        events = _stream(gateway, client, run, max_tokens, body.include_usage, chunk, usage_chunk, None)
        return JobEventStream(events, run)
    try:
        record, usage = await gateway.finish(client, run)
    finally:
        run.close()
    text = (record.result.text if record.result else None) or ""
    finish = compute_finish_reason(usage.completion_tokens, max_tokens)
    reply = msgspec.structs.replace(chunk(text, finish, record.served_digest), usage=usage)
    return _json(reply, run.job_id)


@router.post(
    "/embeddings",
    summary="Embeddings of a string or a list of strings, run as one paid job",
    openapi_extra=openapi_body(EmbeddingRequest),
    responses=_ERRORS,
)
async def embeddings(client: OpenAIClient, gateway: Gateway, body: EmbeddingBody) -> Response:
    run = await gateway.start(client, compute_embedding_job(body))
    try:
        record, usage = await gateway.finish(client, run)
    finally:
        run.close()
    return _json(embedding_list(record, body.model, usage, body.encoding_format), run.job_id)


class JobEventStream(StreamingResponse):
    """Server-sent events of a job run; the run is closed (its slot freed) however the response ends,
    also when the client disconnects before the first byte (the generator's own ``finally`` would not run)."""

    def __init__(self, events: AsyncGenerator[bytes, None], run: JobRun) -> None:
        headers = {**job_headers(run.job_id), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._events = events
        self._run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._run.close()
            await self._events.aclose()


ChunkMaker = Callable[[str | None, FinishReason | None, str | None], msgspec.Struct]
UsageMaker = Callable[[Usage, str | None], msgspec.Struct]


async def _stream(
    gateway: OpenAIGateway,
    client: ApiKey,
    run: JobRun,
    max_tokens: int,
    include_usage: bool,
    chunk: ChunkMaker,
    usage_chunk: UsageMaker,
    first: bytes | None,
) -> AsyncGenerator[bytes, None]:
    """Server-sent events of one job: a chunk per token as the miner reports it, then the finish chunk
    (and the usage chunk), then ``[DONE]``; an error chunk in OpenAI's shape if the job ends without a result.

    Tokens are deduplicated by index (a miner's report is never forwarded twice); the tokens that came in
    together go out in one write. If the job's result turns out longer than what was streamed, the rest
    is sent before the finish chunk; if it does not start with what was streamed (the job was re-run on
    another miner after a failure, at a temperature above 0), the stream ends with an error instead.
    """
    try:
        if first is not None:
            yield first
        fingerprint: str | None = None
        streamed: list[str] = []
        next_index = 0
        pending: list[bytes] = []
        async for event in run.follow(gateway.keepalive_s):
            if event is None:
                pending.append(SSE_KEEPALIVE)
            elif event.event == "status":
                fingerprint = event.data.get("model_digest") or fingerprint
            elif event.event == "token":
                index = int(event.data["index"])
                if index >= next_index:
                    next_index = index + 1
                    text = str(event.data["text"])
                    streamed.append(text)
                    pending.append(sse(chunk(text, None, fingerprint)))
            if pending and (run.queue is None or run.queue.empty()):
                yield b"".join(pending)
                pending = []
        if pending:
            yield b"".join(pending)
        try:
            record, usage = await gateway.outcome(client, run.job_id)
        except AitbcError as exc:
            yield sse(openai_error(exc)[1])
            return
        text = (record.result.text if record.result else None) or ""
        sent = "".join(streamed)
        if not text.startswith(sent):
            message = (
                f"job {run.job_id} was re-run after its miner failed and its result differs from the tokens "
                f"streamed so far; the result is at /api/v1/jobs/{run.job_id}/result"
            )
            yield sse(ErrorBody(error=ErrorDetail(message=message, type="server_error", code="stream_diverged")))
            return
        fingerprint = record.served_digest or fingerprint
        tail = [sse(chunk(text[len(sent) :], None, fingerprint))] if len(text) > len(sent) else []
        tail.append(sse(chunk(None, compute_finish_reason(usage.completion_tokens, max_tokens), fingerprint)))
        if include_usage:
            tail.append(sse(usage_chunk(usage, fingerprint)))
        tail.append(SSE_DONE)
        yield b"".join(tail)
    finally:
        run.close()
