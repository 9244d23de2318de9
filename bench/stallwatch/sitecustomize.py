"""A loop-stall sampler for the coordinator, loaded only by ``bench/settlement.py --stalls``.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``; the bench puts this directory there and
names an output directory in ``BENCH_LOOP_STALLS``. In the process running ``coordinator run`` (and no
other), a heartbeat on the event loop ticks every millisecond and a watchdog thread looks at it every 2 ms:
whenever the heartbeat is ``LATE_S`` late, the watchdog records where the loop's thread stands (its last
frames, from ``sys._current_frames``). At exit it writes the heartbeat's lateness percentiles and the places
the loop stood, most frequent first, to ``stalls-<pid>.txt``.

What it tells: a stall at a call that releases the GIL (``os.write``, ``os.urandom``, a cffi call) is the
loop waiting to take the GIL back behind the process's other threads; a stall in the loop's own poll is a
wait for the GIL or for a core after the poll returned; a stall anywhere else is the loop's own work.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

LATE_S = 0.008
BEAT_S = 0.001
LOOK_S = 0.002
FRAMES = 6


def _install(out_dir: Path) -> None:
    import asyncio

    import uvicorn

    beats: list[float] = []
    last = [time.perf_counter()]
    places: collections.Counter[str] = collections.Counter()
    loop_thread = threading.main_thread().ident

    def beat(loop: asyncio.AbstractEventLoop) -> None:
        now = time.perf_counter()
        beats.append(now - last[0])
        last[0] = now
        loop.call_later(BEAT_S, beat, loop)

    def watch() -> None:
        while True:
            time.sleep(LOOK_S)
            if time.perf_counter() - last[0] < LATE_S:
                continue
            frame = sys._current_frames().get(loop_thread or 0)
            if frame is not None:
                stack = traceback.extract_stack(frame)[-FRAMES:]
                places[" <- ".join(f"{f.name}:{Path(f.filename).name}:{f.lineno}" for f in reversed(stack))] += 1

    def report() -> None:
        lines = [f"stall samples {sum(places.values())} (the loop's heartbeat {LATE_S * 1000:.0f} ms late)"]
        if beats:
            ordered = sorted(beats)
            at = [ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 for q in (0.5, 0.99, 0.999)]
            lines.append(
                f"heartbeat every {BEAT_S * 1000:.0f} ms, {len(ordered)} beats: p50 {at[0]:.2f} ms, p99 {at[1]:.2f} ms,"
                f" p99.9 {at[2]:.2f} ms, max {ordered[-1] * 1000:.1f} ms"
            )
        lines += [f"{count:6d}  {place}" for place, count in places.most_common(25)]
        (out_dir / f"stalls-{os.getpid()}.txt").write_text("\n".join(lines) + "\n")

    serve = uvicorn.Server.serve

    async def serve_watched(self: uvicorn.Server, *args: Any, **kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        last[0] = time.perf_counter()
        loop.call_soon(beat, loop)
        threading.Thread(target=watch, name="stall-watch", daemon=True).start()
        await serve(self, *args, **kwargs)

    uvicorn.Server.serve = serve_watched  # type: ignore[method-assign]
    atexit.register(report)


if os.environ.get("BENCH_LOOP_STALLS") and sys.argv[1:3] == ["coordinator", "run"]:
    _install(Path(os.environ["BENCH_LOOP_STALLS"]))
