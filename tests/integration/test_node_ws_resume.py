"""A ``job_updates`` resume longer than the subscriber's queue: delivered whole and in order, with the
live events that arrive meanwhile after it — over a real WebSocket server on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import connect

from aitbc.node.metrics import NodeMetrics
from aitbc.node.ws import QUEUE_LIMIT, EventHub, start_ws_server

STORED = QUEUE_LIMIT * 5
ADDRESS = "ait1watched"


def event(seq: int, height: int) -> dict[str, Any]:
    return {
        "kind": "escrow_opened",
        "job_id": f"job_{seq}",
        "client": ADDRESS,
        "coordinator": "c",
        "miner": "",
        "event_seq": seq,
        "height": height,
        "amount": seq,
        "tx_hash": "",
    }


def test_long_resume_is_complete_ordered_and_followed_by_live_events() -> None:
    stored = [event(seq, height=seq // 10) for seq in range(1, STORED + 1)]

    def replay(from_height: int, after_seq: int, limit: int) -> list[dict[str, Any]]:
        return [e for e in stored if e["height"] >= from_height and e["event_seq"] > after_seq][:limit]

    async def scenario() -> list[dict[str, Any]]:
        hub = EventHub(NodeMetrics(), replay=replay)
        server = await start_ws_server(hub, "127.0.0.1", 0)
        port = next(iter(server.sockets)).getsockname()[1]
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
                job_filter = {"address": ADDRESS, "from_height": 10}
                await ws.send(
                    orjson.dumps({"id": 1, "method": "subscribe", "params": ["job_updates"], "filter": job_filter})
                )
                reply = orjson.loads(await ws.recv())
                assert reply["result"]["subscribed"] == ["job_updates"]
                # Live events while the replay is still being sent (the client has read nothing yet),
                # including one the replay also holds: it must come once.
                await asyncio.sleep(0.05)
                for seq in (STORED, STORED + 1, STORED + 2):
                    hub.publish("job_updates", event(seq, height=seq // 10))
                received = []
                while len(received) < STORED - 99 + 2:
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                    received.append({**message["params"], "seq": message["seq"]})
                return received
        finally:
            server.close()
            await server.wait_closed()

    received = asyncio.run(scenario())
    seqs = [e["event_seq"] for e in received]
    assert seqs == list(range(100, STORED + 3)), "replay + live must be every event from height 10 on, once, in order"
    assert [e["seq"] for e in received] == list(range(received[0]["seq"], received[0]["seq"] + len(received)))
