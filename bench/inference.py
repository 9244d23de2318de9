"""Inference benchmark: raw llama-cpp-python vs the builtin backend vs a job through the platform.

One run measures, on the same GGUF, the same prompts (chat template, greedy, ``--max-tokens``):

1. **raw llama-cpp-python** (``Llama.generate`` on the chat-formatted prompt tokens, stopping at
   end-of-generation) in several configurations, each in a fresh process (OpenMP reads its
   settings once): 2 threads with OpenMP defaults, with flash attention on and off; 1 thread; 2
   threads with ``OMP_WAIT_POLICY=PASSIVE`` (what the builtin backend used to set); 2 threads with
   the builtin backend's spin bound (``GOMP_SPINCOUNT=20000``: what the bound costs, apart from the
   backend). The best is the baseline;
2. the **builtin backend** (``BuiltinBackend.generate``, continuous batching, automatic threads),
   single stream, then ``--concurrency`` generations at once;
3. a **job through the whole platform**: a coordinator and a builtin miner (real processes,
   ``aitbc coordinator run`` / ``aitbc miner run --slots N``), jobs submitted and followed over
   the event stream with ``CoordinatorClient``, single stream and ``--concurrency`` at once.

The builtin backend and the platform run in ``--rounds`` interleaved rounds (builtin single, platform
single, builtin concurrent, platform concurrent, again...), and each side's best round is compared:
on a shared machine the load changes by the minute, so both sides are taken in the same minutes.
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
import contextlib
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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


def worker_builtin(cfg: dict[str, Any]) -> None:
    """The builtin backend, serving commands from stdin (one JSON line out per command).

    ``single``: the prompts one after another; ``concurrent``: ``concurrency`` at once; ``quit``.
    It stays up between commands so that its rounds interleave with the platform's (same load).
    """
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
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "single":
            out: dict[str, Any] = {"runs": [one(p) for p in cfg["prompts"]]}
        elif command == "concurrent":
            runs, wall = run_concurrently(one, cfg["prompts"], cfg["concurrency"])
            out = {"runs": runs, "wall": wall}
        else:
            break
        out["threads"] = backend.engine_threads(cfg["model"])
        print(json.dumps(out), flush=True)
    backend.close()


def worker_steps(cfg: dict[str, Any]) -> dict[str, Any]:
    """Cost of one decode step of 1, 2 and 4 sequences (one token each), as the builtin engine runs them.

    Where batching gains or loses: if a step of 4 costs k times a step of 1, 4 at once give 4 / k
    times the single-stream rate. Same context settings as :class:`BatchedLlama` (own KV stream per
    sequence, flash attention on, no repacking); each sequence holds a 40-token prompt first.
    """
    import importlib

    lib: Any = importlib.import_module("llama_cpp")
    internals: Any = importlib.import_module("llama_cpp._internals")
    importlib.import_module("llama_cpp._logger").set_verbose(False)
    mparams = lib.llama_model_default_params()
    mparams.use_extra_bufts = False
    model = internals.LlamaModel(path_model=cfg["path"], params=mparams, verbose=False)
    cparams = lib.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch, cparams.n_seq_max = 4 * 2048, 512, 512, 4
    cparams.kv_unified = False
    cparams.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
    ctx = lib.llama_init_from_model(model.model, cparams)
    batch = lib.llama_batch_init(512, 0, 1)

    def decode(items: list[tuple[int, int, int, bool]]) -> None:
        for n, (token, pos, seq, logits) in enumerate(items):
            batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.logits[n] = token, pos, 1, logits
            batch.seq_id[n][0] = seq
        batch.n_tokens = len(items)
        if lib.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    prompt = 40
    for seq in range(4):
        decode([(100 + i, i, seq, i == prompt - 1) for i in range(prompt)])
    pos = [prompt] * 4
    out: dict[str, float] = {}
    for threads in cfg["threads"]:
        lib.llama_set_n_threads(ctx, threads, threads)
        for shape in (1, 2, 4):
            times = []
            for _ in range(40):
                started = time.perf_counter()
                decode([(200, pos[s], s, True) for s in range(shape)])
                times.append(time.perf_counter() - started)
                for s in range(shape):
                    pos[s] += 1
            out[f"{threads}/{shape}"] = sorted(times)[len(times) // 2]
    lib.llama_batch_free(batch)
    lib.llama_free(ctx)
    model.close()
    return out


class BuiltinWorker:
    """The builtin worker process (fresh interpreter: OpenMP reads its settings once)."""

    def __init__(self, cfg: dict[str, Any], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "builtin", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                result: dict[str, Any] = json.loads(line)
                return result
        raise RuntimeError(f"builtin worker ended ({self.proc.wait()})")

    def run(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


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


@contextlib.contextmanager
def platform_stack(args: argparse.Namespace, workdir: Path) -> Iterator[Callable[[str], dict[str, Any]]]:
    """A coordinator and a builtin miner (real processes); yields a function running one job."""
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
                    "model_s": int(result["usage"]["compute_ms"]) / 1000,
                }

        one("Warm up.")
        yield one
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
    parser.add_argument("--skip-raw", action="store_true", help="builtin and platform only (no builtin / raw ratio)")
    parser.add_argument(
        "--raw-budget-s", type=float, default=90.0, help="cut a raw configuration after this long (collapse)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="builtin / platform rounds, interleaved; best of each")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.worker:
        kind, cfg = args.worker[0], json.loads(args.worker[1])
        if kind == "raw":
            print(json.dumps(worker_raw(cfg)))
        elif kind == "steps":
            print(json.dumps(worker_steps(cfg)))
        else:
            worker_builtin(cfg)
        return
    if args.quick:
        args.prompts, args.max_tokens = args.concurrency, 64
    from aitbc.miner.backends.builtin import BuiltinBackend
    from aitbc.miner.backends.tuning import DEFAULT_SPINCOUNT

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
            ("raw, 2 threads, GOMP_SPINCOUNT=20000 (the builtin's bound)", 2, True, {"GOMP_SPINCOUNT": "20000"}),
        ]
        raw_rates = []
        for label, threads, fa, env in [] if args.skip_raw else raw_configs:
            raw_cfg = {**cfg, "threads": threads, "flash_attn": fa, "budget_s": args.raw_budget_s}
            out = spawn_worker("raw", raw_cfg, {**base_env, **env})
            tps, ttft, n = rate(out["runs"])
            raw_rates.append(tps)
            rows.append((label, tps, ttft, n))
            cut = "" if len(out["runs"]) == len(prompts) else f" cut at {args.raw_budget_s:.0f} s"
            show(label, tps, ttft, n, f"load {loadavg()}{cut}")
        best_raw = max(raw_rates, default=float("nan"))
        cores = min(2, os.cpu_count() or 1)
        steps = spawn_worker("steps", {"path": path, "threads": sorted({cores, 1}, reverse=True)}, base_env)
        for threads in sorted({cores, 1}, reverse=True):
            one_ms = 1000 * steps[f"{threads}/1"]
            costs = ", ".join(f"{s} seqs {1000 * steps[f'{threads}/{s}']:.1f} ms" for s in (1, 2, 4))
            print(
                f"  decode step, {threads} thread(s): {costs}; 4 seqs = "
                f"{1000 * steps[f'{threads}/4'] / one_ms:.2f} x 1 seq  load {loadavg()}"
            )
        # builtin and platform in interleaved rounds (the load changes by the minute on a shared
        # machine: each side's best round, taken the same minutes as the other's, is what is compared)
        rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in ("b1", "bN", "p1", "pN")}
        with contextlib.ExitStack() as stack:
            # both sides get the same OpenMP spin bound (libgomp reads it once, when the model loads:
            # a process that loaded in a busy moment keeps the short bound, 1 thread, for its life)
            spin = os.environ.get("GOMP_SPINCOUNT") or DEFAULT_SPINCOUNT
            os.environ["GOMP_SPINCOUNT"] = spin  # the platform's miner inherits it
            print(f"  builtin and platform: GOMP_SPINCOUNT={spin} (both sides)")
            builtin = BuiltinWorker(
                {**cfg, "model": args.model, "concurrency": args.concurrency}, {**base_env, "GOMP_SPINCOUNT": spin}
            )
            stack.callback(builtin.close)
            plat_one = None
            if not args.skip_platform:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="aitbc-bench-inference-"))
                plat_one = stack.enter_context(platform_stack(args, Path(tmp)))
            for _ in range(args.rounds):
                rounds["b1"].append(builtin.run("single"))
                if plat_one is not None:
                    rounds["p1"].append({"runs": [plat_one(p) for p in prompts]})
                rounds["bN"].append(builtin.run("concurrent"))
                if plat_one is not None:
                    runs, wall = run_concurrently(plat_one, prompts, args.concurrency)
                    rounds["pN"].append({"runs": runs, "wall": wall})
                print(f"    round {len(rounds['b1'])}/{args.rounds} done, load {loadavg()}", flush=True)
        best = {k: max(v, key=lambda r: rate(r["runs"], r.get("wall"))[0]) for k, v in rounds.items() if v}
        b_tps, b_ttft, b_n = rate(best["b1"]["runs"])
        c_tps, c_ttft, c_n = rate(best["bN"]["runs"], best["bN"]["wall"])
        each = " / ".join(f"{rate(r['runs'])[0]:.1f}" for r in rounds["b1"])
        show("builtin backend, single stream", b_tps, b_ttft, b_n, f"threads {best['b1']['threads']}  rounds {each}")
        each = " / ".join(f"{rate(r['runs'], r['wall'])[0]:.1f}" for r in rounds["bN"])
        show(
            f"builtin backend, {args.concurrency} at once (aggregate)",
            c_tps,
            c_ttft,
            c_n,
            f"threads {best['bN']['threads']}  rounds {each}",
        )
        texts = [r["text"] for r in rounds["b1"][0]["runs"]]
        others = [r for k in ("b1", "bN", "p1", "pN") for rnd in rounds[k] for r in [rnd["runs"]]]
        same = sum(all(runs[i]["text"] == t for runs in others) for i, t in enumerate(texts))
        p_tps = pc_tps = 0.0
        if not args.skip_platform:
            p_tps, p_ttft, p_n = rate(best["p1"]["runs"])
            pc_tps, pc_ttft, pc_n = rate(best["pN"]["runs"], best["pN"]["wall"])
            each = " / ".join(f"{rate(r['runs'])[0]:.1f}" for r in rounds["p1"])
            show("platform job (coordinator + miner), single stream", p_tps, p_ttft, p_n, f"rounds {each}")
            each = " / ".join(f"{rate(r['runs'], r['wall'])[0]:.1f}" for r in rounds["pN"])
            show(f"platform jobs, {args.concurrency} at once (aggregate)", pc_tps, pc_ttft, pc_n, f"rounds {each}")
            runs = best["p1"]["runs"]
            outside = [1000 * (r["seconds"] - r["model_s"]) for r in runs]
            print(
                f"    platform single stream, per job: wall - model time in the miner (receipt compute_ms) = "
                f"mean {sum(outside) / len(outside):.0f} ms, max {max(outside):.0f} ms"
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
    where = "builtin single and batched" + ("" if args.skip_platform else ", platform single and batched")
    print(f"  outputs: the same text in every run ({where}, every round) for {same}/{len(prompts)} prompts")
    print(f"  load average at end {loadavg()}")


if __name__ == "__main__":
    main()
