"""Inference benchmark: raw llama-cpp-python vs the builtin backend vs a job through the platform.

One run measures, on the same GGUF, the same prompts (chat template, greedy, ``--max-tokens``):

1. **raw llama-cpp-python** (``Llama.generate`` on the chat-formatted prompt tokens, stopping at
   end-of-generation) in several configurations, each in a fresh process (OpenMP reads its
   settings once): 2 threads with OpenMP defaults, with flash attention on and off; 1 thread; 2
   threads with ``OMP_WAIT_POLICY=PASSIVE`` (what the builtin backend used to set). The best is
   the baseline;
2. the **builtin backend** (``BuiltinBackend.generate``, continuous batching, automatic threads),
   single stream, then ``--concurrency`` generations at once;
3. a **job through the whole platform**: a coordinator and a builtin miner (real processes,
   ``aitbc coordinator run`` / ``aitbc miner run --slots N``), jobs submitted and followed over
   the event stream with ``CoordinatorClient``, single stream and ``--concurrency`` at once.

For each: tokens/s (completion tokens / wall time; for concurrent runs the aggregate) and time to
first token (submit → first streamed piece). Ratios: builtin / best raw (target ≥ 0.95), platform /
builtin (≥ 0.95), concurrent aggregate / single stream (≥ 2). The texts of every run are compared
(greedy decoding must give the same text alone and batched). A raw configuration that collapses
is cut after ``--raw-budget-s`` (its rate is what it did until then). ``--busy-core`` keeps one core busy
with a spinning process for the whole run (graceful degradation, no collapse).

    .venv/bin/python bench/inference.py                  # ~5 min on 2 cores
    .venv/bin/python bench/inference.py --busy-core      # the same with one core taken
    .venv/bin/python bench/inference.py --quick          # 4 prompts x 64 tokens
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- workers (each in its own process) -----------------------------------------------------------


def worker_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    """Raw llama-cpp-python: Llama.generate on the prompt tokens, greedy, one prompt after another."""
    import importlib

    from aitbc.miner.backends.llama_batch import open_plain_llama

    llama_cpp: Any = importlib.import_module("llama_cpp")
    fmt_mod: Any = importlib.import_module("llama_cpp.llama_chat_format")
    llm = open_plain_llama(
        cfg["path"], n_ctx=2048, n_threads=cfg["threads"], flash_attn=cfg["flash_attn"], extra_buffers=False
    )
    template = llm.metadata.get("tokenizer.chat_template")
    eos, bos = llm.token_eos(), llm.token_bos()
    formatter = (
        fmt_mod.Jinja2ChatFormatter(
            template=template, eos_token=llm._model.token_get_text(eos), bos_token=llm._model.token_get_text(bos)
        )
        if template
        else None
    )
    vocab = llm._model.vocab
    runs = []
    deadline = None  # set after the warm-up: a configuration that collapses is cut at budget_s
    for prompt in ["Warm up.", *cfg["prompts"]]:
        if deadline is not None and time.perf_counter() > deadline:
            break
        if formatter is not None:
            formatted = formatter(messages=[{"role": "user", "content": prompt}])
            tokens = llm.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
        else:
            tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        llm.reset()
        start = time.perf_counter()
        first = None
        n = 0
        for token in llm.generate(tokens, temp=0.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            n += 1
            if first is None:
                first = time.perf_counter() - start
            if n >= cfg["max_tokens"] or (deadline is not None and time.perf_counter() > deadline):
                break
        runs.append({"seconds": time.perf_counter() - start, "tokens": n, "ttft": first or 0.0})
        if deadline is None:
            deadline = time.perf_counter() + cfg["budget_s"]
    llm.close()
    return {"runs": runs[1:]}


def worker_builtin(cfg: dict[str, Any]) -> dict[str, Any]:
    """The builtin backend: single stream, then ``concurrency`` generations at once."""
    from aitbc.miner.backends.base import GenerationParams
    from aitbc.miner.backends.builtin import BuiltinBackend

    backend = BuiltinBackend(text_models=(cfg["model"],), enable_embedding=False, slots=cfg["concurrency"])
    backend.warm_up()
    params = GenerationParams(max_tokens=cfg["max_tokens"], temperature=0.0)

    def one(prompt: str) -> dict[str, Any]:
        start = time.perf_counter()
        first: list[float] = []

        def on_token(_piece: str) -> None:
            if not first:
                first.append(time.perf_counter() - start)

        result = backend.generate(cfg["model"], prompt=prompt, params=params, on_token=on_token)
        return {
            "seconds": time.perf_counter() - start,
            "tokens": result.completion_tokens,
            "ttft": first[0] if first else 0.0,
            "text": result.text,
        }

    one("Warm up.")
    single = [one(p) for p in cfg["prompts"]]
    threads_single = backend.engine_threads(cfg["model"])
    concurrent, wall = run_concurrently(one, cfg["prompts"], cfg["concurrency"])
    threads_batched = backend.engine_threads(cfg["model"])
    backend.close()
    return {
        "single": single,
        "concurrent": concurrent,
        "wall": wall,
        "threads": [threads_single, threads_batched],
    }


def run_concurrently(fn: Any, prompts: list[str], concurrency: int) -> tuple[list[dict[str, Any]], float]:
    """``concurrency`` threads take the prompts from one queue; results in prompt order, and the wall time."""
    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(prompts)):
        todo.put(i)
    results: list[dict[str, Any]] = [{} for _ in prompts]
    errors: list[BaseException] = []

    def loop() -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = fn(prompts[i])
            except BaseException as e:
                errors.append(e)
                return

    start = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results, time.perf_counter() - start


def spawn_worker(kind: str, cfg: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run a worker in a fresh interpreter (OpenMP settings are read once per process)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind, json.dumps(cfg)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- the platform --------------------------------------------------------------------------------


def bench_platform(args: argparse.Namespace, prompts: list[str], workdir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    from aitbc.client import coordinator as sdk
    from coordinator import start_coordinator, start_miner, stop_process, wait_for_model

    coord = start_coordinator(workdir, "coord")
    miner = start_miner(
        workdir, "miner", coord.url, "builtin", ["--slots", str(args.concurrency), "--model", args.model]
    )
    try:
        wait_for_model(coord, args.model, 1, [miner])

        def one(prompt: str) -> dict[str, Any]:
            with sdk.CoordinatorClient(coord.url, coord.api_key, timeout=600.0) as client:
                start = time.perf_counter()
                job = client.submit_inference(
                    args.model, prompt, params={"max_tokens": args.max_tokens, "temperature": 0}, ttl_seconds=900
                )
                first = None
                final = None
                for event, data in client.events(job["job_id"]):
                    if event == "token" and first is None:
                        first = time.perf_counter() - start
                    if event == "status" and data.get("state") in {"completed", "failed", "cancelled", "expired"}:
                        final = data["state"]
                if final != "completed":
                    raise RuntimeError(f"job {job['job_id']} ended {final}")
                result = client.result(job["job_id"])
                return {
                    "seconds": time.perf_counter() - start,
                    "tokens": int(result["usage"]["completion_tokens"]),
                    "ttft": first or 0.0,
                    "text": result["output"]["text"],
                }

        one("Warm up.")
        single = [one(p) for p in prompts]
        concurrent, wall = run_concurrently(one, prompts, args.concurrency)
        return {"single": single, "concurrent": concurrent, "wall": wall}
    finally:
        stop_process(miner)
        coord.stop()


# -- report --------------------------------------------------------------------------------------


def rate(runs: list[dict[str, Any]], wall: float | None = None) -> tuple[float, float, int]:
    """(tokens/s, mean time to first token in ms, tokens): wall time given for concurrent runs."""
    tokens = sum(r["tokens"] for r in runs)
    seconds = wall if wall is not None else sum(r["seconds"] for r in runs)
    return tokens / seconds, 1000 * sum(r["ttft"] for r in runs) / len(runs), tokens


def show(label: str, tps: float, ttft: float, tokens: int, extra: str = "") -> None:
    print(f"  {label:<66} {tps:7.1f} tok/s  ttft {ttft:6.0f} ms  ({tokens} tokens)  {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="builtin text model")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per run (default 8; quick: --concurrency)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--busy-core", action="store_true", help="keep one core busy with a spinning process")
    parser.add_argument("--skip-platform", action="store_true")
    parser.add_argument(
        "--raw-budget-s", type=float, default=90.0, help="cut a raw configuration after this long (collapse)"
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.worker:
        kind, cfg = args.worker[0], json.loads(args.worker[1])
        out = worker_raw(cfg) if kind == "raw" else worker_builtin(cfg)
        print(json.dumps(out))
        return
    if args.quick:
        args.prompts, args.max_tokens = args.concurrency, 64
    from aitbc.miner.backends.builtin import BuiltinBackend

    path = str(BuiltinBackend(text_models=(args.model,), enable_embedding=False).model_path(args.model))
    prompts = (PROMPTS * (1 + args.prompts // len(PROMPTS)))[: args.prompts]
    import llama_cpp

    print("== inference benchmark ==")
    print(
        f"  machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, llama-cpp-python {llama_cpp.__version__}; model {args.model} ({path})"
    )
    print(
        f"  workload: {len(prompts)} prompts, chat template, greedy, up to {args.max_tokens} tokens each; "
        f"concurrency {args.concurrency}; load average at start {loadavg()}"
    )
    busy = None
    if args.busy_core:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        print(f"  ONE CORE KEPT BUSY by a spinning process (pid {busy.pid}) for the whole run")
    base_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    cfg = {"path": path, "prompts": prompts, "max_tokens": args.max_tokens}
    rows: list[tuple[str, float, float, int]] = []
    try:
        raw_configs = [
            ("raw, 2 threads, OpenMP defaults, flash-attn off (library default)", 2, False, {}),
            ("raw, 2 threads, OpenMP defaults, flash-attn on", 2, True, {}),
            ("raw, 1 thread", 1, True, {}),
            ("raw, 2 threads, OMP_WAIT_POLICY=PASSIVE (old builtin)", 2, True, {"OMP_WAIT_POLICY": "PASSIVE"}),
        ]
        raw_rates = []
        for label, threads, fa, env in raw_configs:
            raw_cfg = {**cfg, "threads": threads, "flash_attn": fa, "budget_s": args.raw_budget_s}
            out = spawn_worker("raw", raw_cfg, {**base_env, **env})
            tps, ttft, n = rate(out["runs"])
            raw_rates.append(tps)
            rows.append((label, tps, ttft, n))
            cut = "" if len(out["runs"]) == len(prompts) else f" cut at {args.raw_budget_s:.0f} s"
            show(label, tps, ttft, n, f"load {loadavg()}{cut}")
        best_raw = max(raw_rates)
        out = spawn_worker("builtin", {**cfg, "model": args.model, "concurrency": args.concurrency}, base_env)
        b_tps, b_ttft, b_n = rate(out["single"])
        c_tps, c_ttft, c_n = rate(out["concurrent"], out["wall"])
        print(
            f"  {'builtin backend, single stream':<66} {b_tps:7.1f} tok/s  ttft {b_ttft:6.0f} ms  ({b_n} tokens)"
            f"  threads {out['threads'][0]}  load {loadavg()}"
        )
        print(
            f"  {f'builtin backend, {args.concurrency} at once (aggregate)':<66} {c_tps:7.1f} tok/s  ttft "
            f"{c_ttft:6.0f} ms  ({c_n} tokens)  threads {out['threads'][1]}"
        )
        texts = [r["text"] for r in out["single"]]
        same_batched = sum(a == r["text"] for a, r in zip(texts, out["concurrent"], strict=True))
        p_tps = pc_tps = 0.0
        same_platform = -1
        if not args.skip_platform:
            with tempfile.TemporaryDirectory(prefix="aitbc-bench-inference-") as tmp:
                plat = bench_platform(args, prompts, Path(tmp))
            p_tps, p_ttft, p_n = rate(plat["single"])
            pc_tps, pc_ttft, pc_n = rate(plat["concurrent"], plat["wall"])
            show("platform job (coordinator + miner), single stream", p_tps, p_ttft, p_n, f"load {loadavg()}")
            show(f"platform jobs, {args.concurrency} at once (aggregate)", pc_tps, pc_ttft, pc_n)
            same_platform = sum(
                a == b and a == c["text"]
                for a, b, c in zip(texts, [r["text"] for r in plat["single"]], plat["concurrent"], strict=True)
            )
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    print("\n  ratios (same run):")
    print(f"    builtin single / best raw              = {b_tps / best_raw:5.2f}   (target >= 0.95)")
    print(f"    builtin {args.concurrency} at once / builtin single      = {c_tps / b_tps:5.2f}   (target >= 2)")
    if not args.skip_platform:
        print(f"    platform single / builtin single       = {p_tps / b_tps:5.2f}   (target >= 0.95)")
        print(f"    platform {args.concurrency} at once / platform single    = {pc_tps / p_tps:5.2f}   (target >= 2)")
        print(f"    platform single / best raw             = {p_tps / best_raw:5.2f}")
    print(f"  outputs: builtin batched text == single-stream text for {same_batched}/{len(prompts)} prompts", end="")
    if same_platform >= 0:
        print(f"; platform (single and {args.concurrency} at once) == builtin for {same_platform}/{len(prompts)}")
    else:
        print()
    print(f"  load average at end {loadavg()}")


if __name__ == "__main__":
    main()
