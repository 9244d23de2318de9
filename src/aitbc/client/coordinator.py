"""``CoordinatorClient``: the Python SDK for submitting jobs and reading results."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from aitbc.client.http import RestClient, raise_for_problem
from aitbc.protocol.crypto import sha256_hex
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.sealed import seal_dataset

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})


class CoordinatorClient(RestClient):
    service = "coordinator"

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, {"X-Api-Key": api_key} if api_key else {}, timeout, transport)

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/healthz")
        return result

    def models(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/api/v1/models")["models"])

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/v1/jobs", json=body)
        return result

    def account(self) -> dict[str, Any] | None:
        """The API key's deposit as the coordinator counts it (balance, reserved, pending, spent, cap); None
        when the key has no deposit (its jobs then need a per-job escrow)."""
        try:
            result: dict[str, Any] = self._request("GET", "/api/v1/account")
        except RemoteError as exc:
            if exc.reason in ("no_deposit", "not_found"):
                return None
            raise
        return result

    def quote(self, job_type: str, model: str, model_digest: str | None = None) -> dict[str, Any]:
        """The miner a job would go to (a private job is sealed to it) and its unit price."""
        body = {"type": job_type, "model": model, **({"model_digest": model_digest} if model_digest else {})}
        result: dict[str, Any] = self._request("POST", "/api/v1/jobs/quote", json=body)
        return result

    def submit_inference(
        self, model: str, prompt: str | None = None, *, messages: list[dict[str, str]] | None = None, **options: Any
    ) -> dict[str, Any]:
        job_input: dict[str, Any] = {"prompt": prompt} if messages is None else {"messages": messages}
        return self.submit({"type": "inference", "model": model, "input": job_input, **options})

    def submit_embedding(self, model: str, texts: list[str], **options: Any) -> dict[str, Any]:
        return self.submit({"type": "embedding", "model": model, "input": {"texts": texts}, **options})

    def put_blob(self, data: bytes) -> str:
        """Upload a blob (a training dataset); returns its sha256, checked against the coordinator's answer."""
        headers = {"Content-Type": "application/octet-stream"}
        answer = self._request("POST", "/api/v1/blobs", content=data, headers=headers, timeout=300.0)
        if answer.get("hash") != sha256_hex(data):
            raise RemoteError("the coordinator stored the blob under another hash", reason="bad_blob")
        return sha256_hex(data)

    def reseal_dataset(self, job_id: str, data: bytes, miner: str) -> dict[str, Any]:
        """Audited private training: seal the dataset to the job's drawn auditor or referee ``miner``, upload
        it and name it for the job's audit input (docs/training.md)."""
        blob = self.put_blob(seal_dataset(data, miner))
        path = f"/api/v1/jobs/{job_id}/sealed-datasets"
        answer: dict[str, Any] = self._request("POST", path, json={"miner": miner, "blob": blob})
        return answer

    def get_blob(self, blob_hash: str, job_id: str | None = None) -> bytes:
        """A blob (trained weights, a loss curve), checked against its hash: one this key uploaded, or one the
        job ``job_id`` of this key names."""
        params = None if job_id is None else {"job": job_id}
        response = self._send("GET", f"/api/v1/blobs/{blob_hash}", params=params, timeout=300.0)
        if response.status_code != 200:
            raise_for_problem(response)
        if sha256_hex(response.content) != blob_hash:
            raise RemoteError(f"blob {blob_hash} does not hash to its name", reason="bad_blob")
        return response.content

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/jobs/{job_id}")
        return result

    def result(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/jobs/{job_id}/result")
        return result

    def receipt(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/jobs/{job_id}/receipt")
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/api/v1/jobs/{job_id}/cancel")
        return result

    def list_jobs(
        self, *, state: str | None = None, model: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        params = {k: v for k, v in {"state": state, "model": model, "limit": limit, "cursor": cursor}.items() if v}
        result: dict[str, Any] = self._request("GET", "/api/v1/jobs", params=params)
        return result

    def wait(self, job_id: str, timeout: float = 300.0, poll: float = 0.2) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise RemoteError(f"job {job_id} still {job['state']} after {timeout:.0f}s", reason="timeout")
            time.sleep(poll)

    def events(self, job_id: str, timeout: float = 600.0) -> Iterator[tuple[str, dict[str, Any]]]:
        """Follow the job's server-sent events until it finishes: (event, data) pairs."""
        try:
            with self._http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for_problem(response)
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        yield event, orjson.loads(line[6:])
                        event = "message"
        except httpx.HTTPError as exc:
            raise RemoteError(f"event stream broke: {exc}", reason="unreachable") from None
