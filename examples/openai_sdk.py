"""The official OpenAI SDK against AITBC: the coordinator's /v1 routes, paid from the devnet key's deposit.

python examples/openai_sdk.py
"""

from __future__ import annotations

import os

from openai import OpenAI

from aitbc.client.devnet import load_devnet

MODEL = os.environ.get("AITBC_EXAMPLE_MODEL", "smollm2-135m-instruct")


def main() -> None:
    devnet = load_devnet()
    client = OpenAI(base_url=devnet.openai_base_url, api_key=devnet.api_key)
    print("models:", [m.id for m in client.models.list()])

    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=16
    )
    print("reply:", reply.choices[0].message.content, "| finish:", reply.choices[0].finish_reason)
    print("job id:", reply.id, "| usage (from the receipt):", reply.usage)

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        if chunk.usage:
            print("\nusage:", chunk.usage)


if __name__ == "__main__":
    main()
