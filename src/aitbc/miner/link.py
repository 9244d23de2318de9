"""The miner's side of the coordinator's miner API: signed requests, and results delivered in batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec
import orjson

from aitbc.client.http import AsyncRestClient
from aitbc.protocol.auth import sign_miner_request
from aitbc.protocol.crypto import KeyPair, sha256_hex
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.job_messages import MAX_CLAIM_BATCH, BatchedResult, ResultBatch, ResultSubmission


def now_ms() -> int:
    return int(time.time() * 1000)


class ResultQueue:
    """Results waiting for delivery: while one ``results`` request is in flight the next ones gather, so
    under load each request carries many results (one signature, one round trip) and alone it goes at once."""

    def __init__(self, link: CoordinatorLink, max_items: int) -> None:
        self.link = link
        self.max_items = min(max_items, MAX_CLAIM_BATCH)
        self.waiting: list[tuple[BatchedResult, asyncio.Future[tuple[int, Any]]]] = []
        self.wake = asyncio.Event()

    async def deliver(self, job_id: str, result: ResultSubmission) -> tuple[int, Any]:
        """Queue one result; returns (HTTP-like status, body) of its own outcome, as the single route would."""
        item = BatchedResult(
            job_id=job_id,
            lease_id=result.lease_id,
            output=result.output,
            receipt=result.receipt,
            zk_proof=result.zk_proof,
        )
        future: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        self.wake.set()
        return await future

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.waiting:
                batch, self.waiting = self.waiting[: self.max_items], self.waiting[self.max_items :]
                try:
                    status, data = await self.link.post(
                        "/api/v1/miners/results", ResultBatch(results=[item for item, _ in batch])
                    )
                except (RemoteError, OSError) as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                answers = {a["job_id"]: a for a in data.get("results", [])} if status == 200 else {}
                for item, future in batch:
                    if future.done():
                        continue
                    answer = answers.get(item.job_id)
                    if answer is None:
                        future.set_result((status if status != 200 else 502, data))
                    elif "error" in answer:
                        future.set_result((int(answer["error"].get("status", 400)), {"error": answer["error"]}))
                    else:
                        future.set_result((200, {"receipt_hash": answer["receipt_hash"]}))


class CoordinatorLink(AsyncRestClient):
    """Signed HTTP calls to the coordinator's miner API (on the shared async REST client)."""

    service = "coordinator"

    def __init__(
        self, base_url: str, key: KeyPair, chain_id: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        # a claim long-polls up to 60 s: the read timeout leaves room for it
        super().__init__(base_url, {}, httpx.Timeout(70.0, connect=5.0), transport)
        self.key = key
        self.chain_id = chain_id

    @classmethod
    async def connect(
        cls, base_url: str, key: KeyPair, transport: httpx.AsyncBaseTransport | None = None
    ) -> CoordinatorLink:
        """A link to the coordinator at ``base_url``, signing for the chain its ``/healthz`` names."""
        link = cls(base_url, key, "", transport)
        try:
            health = await link._request("GET", "/healthz")
            link.chain_id = str(health["chain_id"])
        except BaseException:
            await link.aclose()
            raise
        return link

    async def send(self, path: str, payload: dict[str, Any] | msgspec.Struct) -> httpx.Response:
        """POST ``payload`` (a protocol message or plain JSON) signed with the miner's key; any status comes
        back, a transport failure is ``RemoteError(reason="unreachable")``."""
        body = msgspec.json.encode(payload) if isinstance(payload, msgspec.Struct) else orjson.dumps(payload)
        headers = sign_miner_request(self.key, self.chain_id, "POST", path, body, now_ms())
        headers["Content-Type"] = "application/json"
        return await self._send("POST", path, content=body, headers=headers)

    async def get(self, path: str) -> tuple[int, Any]:
        """A signed GET (the signature covers the empty body); (status, JSON body)."""
        headers = sign_miner_request(self.key, self.chain_id, "GET", path, b"", now_ms())
        return _status_and_json(await self._send("GET", path, headers=headers))

    async def post(self, path: str, payload: dict[str, Any] | msgspec.Struct) -> tuple[int, Any]:
        return _status_and_json(await self.send(path, payload))

    async def get_blob(self, blob_hash: str, job_id: str | None = None) -> bytes:
        """A blob from the coordinator's store, checked against its hash (``RemoteError`` if not there, or not
        readable by this miner: ``job_id`` names the job through which it may read it)."""
        path = f"/api/v1/blobs/{blob_hash}"
        headers = sign_miner_request(self.key, self.chain_id, "GET", path, b"", now_ms())
        params = None if job_id is None else {"job": job_id}
        response = await self._send("GET", path, headers=headers, params=params)
        if response.status_code != 200:
            raise RemoteError(
                f"blob {blob_hash}: HTTP {response.status_code}", reason=error_reason(json_or_none(response))
            )
        if sha256_hex(response.content) != blob_hash:
            raise RemoteError(f"blob {blob_hash} does not hash to its name", reason="bad_blob")
        return response.content

    async def put_blob(self, data: bytes) -> str:
        """Store ``data`` as a blob on the coordinator; returns its sha256."""
        path = "/api/v1/blobs"
        headers = sign_miner_request(self.key, self.chain_id, "POST", path, data, now_ms())
        headers["Content-Type"] = "application/octet-stream"
        status, answer = _status_and_json(await self._send("POST", path, content=data, headers=headers))
        if status != 201 or answer.get("hash") != sha256_hex(data):
            raise RemoteError(f"blob upload refused: HTTP {status}", reason=error_reason(answer))
        return sha256_hex(data)

    async def close(self) -> None:
        await self.aclose()


def _status_and_json(response: httpx.Response) -> tuple[int, Any]:
    if response.status_code == 204:
        return 204, None
    try:
        data = response.json()
    except ValueError:
        data = {"error": {"reason": "bad_reply", "message": response.text[:200]}}
    return response.status_code, data


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_reason(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("reason", "error"))
    return "error"
