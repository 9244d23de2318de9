"""OpenAI-compatible streaming through the coordinator vs the miner's backend called directly, same run.

The platform path: the official ``openai`` SDK streams ``/v1/chat/completions`` from a real coordinator
(``aitbc coordinator run``) whose job runs on a real miner (``aitbc miner run --backend builtin
--slots 1``) — submission, matching, claim, the miner's progress reports, SSE to the client. The
baseline: the same backend class (``BuiltinBackend``, the same GGUF, one slot) called in this process.
Both run ``--threads`` llama.cpp threads (fixed, so the thread tuner cannot pick differently). Prompts
alternate between the two (direct first on even rounds, API first on odd ones), so both see the same
machine load. Both run greedy with the same ``max_tokens``; their texts are compared.

Figures per path: time to first token (request → first content chunk / first ``on_token``), streaming
rate (tokens after the first / time from the first to the last token) and end-to-end rate (tokens /
total time). Targets: TTFT overhead p50 (paired per prompt) ≤ 50 ms; streaming-rate ratio
platform / direct ≥ 0.95. The machine is shared: the load average is printed before and after.

    .venv/bin/python bench/openai_api.py                 # 8 prompts x 64 tokens, ~2-4 min on 2 cores
    .venv/bin/python bench/openai_api.py --rounds 16 --max-tokens 128
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe a walk through a forest in autumn.",
    "What should I pack for a week at the beach?",
    "Tell me about the history of bread.",
    "Give me advice for learning to play the guitar.",
    "Describe the city of Paris to a child.",
    "Explain why the sky is blue.",
]
MODEL = "smollm2-135m-instruct"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def direct_run(backend: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    from aitbc.miner.backends.base import GenerationParams

    stamps: list[float] = []
    start = time.perf_counter()
    result = backend.generate(
        MODEL,
        prompt=prompt,
        params=GenerationParams(max_tokens=max_tokens, temperature=0.0),
        on_token=lambda _piece: stamps.append(time.perf_counter()),
    )
    end = time.perf_counter()
    return _figures(start, stamps, end, result.completion_tokens, result.text)


def api_run(client: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    stamps: list[float] = []
    pieces: list[str] = []
    tokens = 0
    start = time.perf_counter()
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    return _figures(start, stamps, end, tokens, "".join(pieces))


def _figures(start: float, stamps: list[float], end: float, tokens: int, text: str) -> dict[str, Any]:
    if not stamps:
        raise RuntimeError("no token came back")
    span = stamps[-1] - stamps[0]
    return {
        "ttft": stamps[0] - start,
        "stream_tps": (tokens - 1) / span if span > 0 and tokens > 1 else float("nan"),
        "e2e_tps": tokens / (end - start),
        "tokens": tokens,
        "text": text,
    }


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="prompts per path")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads on both paths (fixed: no tuner)")
    args = parser.parse_args()

    import openai

    from aitbc.miner.backends.builtin import BuiltinBackend
    from coordinator import start_coordinator, start_miner, stop_process, wait_for_model

    load_before = loadavg()
    print(f"# OpenAI-compatible streaming vs the backend direct — {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average before {load_before}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="aitbc-bench-openai-") as tmp:
        workdir = Path(tmp)
        coord = start_coordinator(workdir, "coord")
        miner = start_miner(
            workdir, "miner", coord.url, "builtin", ["--slots", "1", "--model", MODEL, "--threads", str(args.threads)]
        )
        backend = BuiltinBackend(text_models=(MODEL,), enable_embedding=False, slots=1, n_threads=args.threads)
        try:
            backend.warm_up()
            wait_for_model(coord, MODEL, 1, [miner])
            client = openai.OpenAI(base_url=coord.url + "/v1", api_key=coord.api_key, max_retries=0, timeout=600)
            direct_run(backend, "Warm up.", 8)
            api_run(client, "Warm up.", 8)
            direct: list[dict[str, Any]] = []
            api: list[dict[str, Any]] = []
            for i in range(args.rounds):
                prompt = PROMPTS[i % len(PROMPTS)]
                if i % 2 == 0:
                    direct.append(direct_run(backend, prompt, args.max_tokens))
                    api.append(api_run(client, prompt, args.max_tokens))
                else:
                    api.append(api_run(client, prompt, args.max_tokens))
                    direct.append(direct_run(backend, prompt, args.max_tokens))
        finally:
            backend.close()
            stop_process(miner)
            coord.stop()
    load_after = loadavg()

    same = sum(d["text"] == a["text"] for d, a in zip(direct, api, strict=True))
    overhead = [a["ttft"] - d["ttft"] for d, a in zip(direct, api, strict=True)]
    d_stream = statistics.fmean(r["stream_tps"] for r in direct)
    a_stream = statistics.fmean(r["stream_tps"] for r in api)
    d_e2e = statistics.fmean(r["e2e_tps"] for r in direct)
    a_e2e = statistics.fmean(r["e2e_tps"] for r in api)
    tokens = sum(r["tokens"] for r in api)
    print(f"{args.rounds} prompts x max_tokens {args.max_tokens}, greedy; {tokens} tokens through the API; "
          f"identical texts {same}/{args.rounds}")  # fmt: skip
    print(f"{'path':<44} {'TTFT p50':>10} {'TTFT p90':>10} {'stream tok/s':>13} {'end-to-end tok/s':>17}")
    for label, runs, stream, e2e in (
        ("backend direct (BuiltinBackend, in process)", direct, d_stream, d_e2e),
        ("/v1/chat/completions stream (openai SDK)", api, a_stream, a_e2e),
    ):
        ttfts = sorted(r["ttft"] for r in runs)
        p90 = ttfts[min(len(ttfts) - 1, int(0.9 * len(ttfts)))]
        print(f"{label:<44} {p50(ttfts) * 1000:>8.1f}ms {p90 * 1000:>8.1f}ms {stream:>13.1f} {e2e:>17.1f}")
    ttft_over = p50(overhead) * 1000
    ratio = a_stream / d_stream
    print(f"TTFT overhead p50 (paired): {ttft_over:.1f} ms (target <= 50) -> {'PASS' if ttft_over <= 50 else 'FAIL'}")
    print(
        f"streaming tokens/s ratio API / direct: {ratio:.3f} (target >= 0.95) -> {'PASS' if ratio >= 0.95 else 'FAIL'}"
    )
    print(f"end-to-end tokens/s ratio API / direct: {a_e2e / d_e2e:.3f} (includes TTFT and the result round trip)")
    print(f"load average before {load_before}, after {load_after}")


if __name__ == "__main__":
    main()
