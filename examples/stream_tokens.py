"""Stream a job's tokens as the miner produces them, two ways: server-sent events and the WebSocket.

python examples/stream_tokens.py
"""

from __future__ import annotations

import json
import os

from websockets.sync.client import connect

from aitbc.client.devnet import load_devnet

MODEL = os.environ.get("AITBC_EXAMPLE_MODEL", "smollm2-135m-instruct")


def main() -> None:
    devnet = load_devnet()
    with devnet.coordinator() as coordinator:
        # 1. server-sent events of one job: ("status" | "token" | "receipt", data) until it ends
        job = coordinator.submit_inference(MODEL, "Count from one to five.", params={"max_tokens": 24})
        for event, data in coordinator.events(job["job_id"]):
            if event == "token":
                print(data["text"], end="", flush=True)
            elif event == "status":
                print(f"\n[{data['state']}]")

        # 2. the job_updates WebSocket: every job of this API key, numbered, resumable with after_seq
        with connect(devnet.job_updates_url, additional_headers={"X-Api-Key": devnet.api_key}) as ws:
            ws.send(json.dumps({"id": 1, "method": "subscribe", "params": ["job_updates"]}))
            print("subscribed:", json.loads(ws.recv(timeout=10))["result"])
            job = coordinator.submit_inference(MODEL, "Say hello.", params={"max_tokens": 16})
            while True:
                update = json.loads(ws.recv(timeout=120))["params"]
                if update["job_id"] != job["job_id"]:
                    continue
                if update["event"] == "token":
                    print(update["data"]["text"], end="", flush=True)
                elif update["event"] == "status" and update["data"]["state"] == "completed":
                    print(f"\n[completed] last event_seq {update['event_seq']}")
                    break


if __name__ == "__main__":
    main()
