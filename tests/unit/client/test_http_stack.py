"""One HTTP client stack: ``RestClient`` / ``AsyncRestClient`` under the node, pool hub and miner links."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from aitbc.client.http import AsyncRestClient, is_unreachable
from aitbc.client.node import NodeClient
from aitbc.client.poolhub import AsyncPoolHubClient
from aitbc.miner.link import CoordinatorLink
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import RemoteError


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_the_node_client_speaks_json_rpc_through_the_shared_client() -> None:
    seen: list[httpx.Request] = []

    def node(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        call = orjson.loads(request.content)
        if call["method"] == "get_head":
            return httpx.Response(200, json={"jsonrpc": "2.0", "result": {"height": 7}, "id": call["id"]})
        error = {"code": -32004, "message": "no tx", "data": {"reason": "not_found"}}
        return httpx.Response(200, json={"jsonrpc": "2.0", "error": error, "id": call["id"]})

    with NodeClient("http://node.test:9080/rpc/", transport=httpx.MockTransport(node)) as client:
        assert client.get_head() == {"height": 7}
        with pytest.raises(RemoteError) as caught:
            client.get_tx_status("ab" * 32)
    assert caught.value.code == -32004 and caught.value.reason == "not_found"
    assert str(seen[0].url) == "http://node.test:9080/rpc/"
    with (
        NodeClient("http://node.test:9080", transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(RemoteError, match=r"cannot reach the node at http://node\.test:9080") as caught,
    ):
        client.get_head()
    assert is_unreachable(caught.value)


def test_the_async_client_maps_refusals_and_transport_failures_alike() -> None:
    def hub(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t0k"
        if request.url.path == "/v1/miners":
            return httpx.Response(401, json={"error": {"reason": "unauthorized", "message": "bad token"}})
        return httpx.Response(200, json={"ok": True})

    async def scenario() -> None:
        async with AsyncPoolHubClient("http://hub.test", "t0k", transport=httpx.MockTransport(hub)) as client:
            assert await client.post("/v1/heartbeats", {"beats": []}) == {"ok": True}
            with pytest.raises(RemoteError) as refused:
                await client.post("/v1/miners", {})
            assert refused.value.code == 401 and refused.value.reason == "unauthorized"
            assert not is_unreachable(refused.value)
        down = AsyncRestClient("http://down.test", {}, 1.0, httpx.MockTransport(refuse))
        with pytest.raises(RemoteError) as unreachable:
            await down._request("GET", "/healthz")
        assert is_unreachable(unreachable.value)
        await down.aclose()

    asyncio.run(scenario())


def test_the_miner_link_learns_the_chain_and_signs_every_request() -> None:
    key = KeyPair.generate()

    def coordinator(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"chain_id": "aitbc-unit"})
        assert request.headers["x-aitbc-miner"] == key.address
        return httpx.Response(204)

    async def scenario() -> tuple[str, int]:
        link = await CoordinatorLink.connect("http://coord.test", key, httpx.MockTransport(coordinator))
        try:
            status, _ = await link.post("/api/v1/miners/claim", {"wait_seconds": 0})
            return link.chain_id, status
        finally:
            await link.close()

    assert asyncio.run(scenario()) == ("aitbc-unit", 204)
