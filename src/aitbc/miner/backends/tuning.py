"""How the builtin backend uses the machine: CPU threads, OpenMP waiting, GPU layers.

Pure decisions (no I/O) so they can be tested on their own; :mod:`aitbc.miner.backends.llama_batch`
applies them.

Why this exists (measured on a 2-core machine, SmolLM2-135M, see ``bench/inference.py``):

- llama.cpp's CPU backend runs each operation of the model on ``n_threads`` OpenMP threads and
  waits at a barrier after it, several hundred times per token. With OpenMP's *passive* waiting
  every barrier is a futex sleep/wake: 2 threads gave about a quarter of the speed of the
  default (spin a while, then sleep). With *active* (endless) spinning, a thread that loses its
  core to another process stalls all the others at the next barrier: generation collapses to a few
  tokens per second on a busy machine.
- So the backend (1) keeps OpenMP's bounded spin (``GOMP_SPINCOUNT``: about the length of one
  operation) unless the operator chose a policy, and (2) picks the thread count *while running*:
  :class:`ThreadTuner` keeps the best of the candidate counts (e.g. 2 and 1) by their measured
  decode step time and re-tries the others now and then, so a miner runs 2 threads on a free
  machine and drops to 1 when another process holds a core, and back again when it leaves.
  Changing the thread count does not change the numbers llama.cpp computes (each output element is
  computed by one thread), so outputs stay the same whichever count runs.
"""

from __future__ import annotations

import os
import statistics
from collections import deque
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Final

DEFAULT_SPINCOUNT: Final = "20000"
"""libgomp's spin iterations before a waiting thread sleeps (its default is 300000; PASSIVE is 0).

libgomp reads it once, when it loads, so it is not chosen by how busy the machine is at that moment:
a miner that started while the machine was busy used to keep a spin of 200 for good, and with it ran
1 thread at about half the speed once the machine was free again (SmolLM2, quiet: 72 tokens/s at
spin 200 against 137 at 20000). On a busy machine the thread tuner runs 1 thread, where the spin
does not matter (no barrier to wait at), and backs off its probes of the collapsing count."""

ALL_LAYERS: Final = -1
"""``n_gpu_layers`` meaning every layer (llama.cpp clamps it to the model's layer count)."""


def compute_openmp_env(environ: Mapping[str, str], spincount: str | None = None) -> dict[str, str]:
    """The OpenMP variables to set before llama.cpp's library (and libgomp) is loaded.

    Nothing is set when the operator already chose ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``;
    ``spincount`` (the miner's setting) overrides the default bound.
    """
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    return {"GOMP_SPINCOUNT": spincount or DEFAULT_SPINCOUNT}


def apply_openmp_env(environ: MutableMapping[str, str] | None = None, spincount: str | None = None) -> dict[str, str]:
    """Set :func:`compute_openmp_env`'s variables in ``environ`` (default ``os.environ``); returns them."""
    target = os.environ if environ is None else environ
    chosen = compute_openmp_env(target, spincount)
    target.update(chosen)
    return chosen


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def compute_thread_candidates(threads: int | None, cores: int) -> tuple[int, ...]:
    """The thread counts the tuner may use: ``(threads,)`` when fixed, else ``cores`` and down.

    ``threads=None`` means automatic: all usable cores, falling back to half of them, then 1 (at
    most three candidates, largest first). A fixed count is used as given (the operator knows).
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        return (threads,)
    cores = max(1, cores)
    return tuple(sorted({cores, max(1, cores // 2), 1}, reverse=True))


def compute_gpu_layers(setting: int | None, supports_gpu_offload: bool) -> int:
    """``n_gpu_layers`` for llama.cpp: the setting if given, else all layers on a GPU build, else 0.

    ``supports_gpu_offload`` is ``llama_cpp.llama_supports_gpu_offload()``: true only for a
    llama-cpp-python built with CUDA (or Metal, Vulkan, ...). ``-1`` means every layer.
    """
    if setting is not None:
        if setting < -1:
            raise ValueError(f"gpu_layers must be -1 (all), 0 (none) or a layer count, got {setting}")
        return setting
    return ALL_LAYERS if supports_gpu_offload else 0


@dataclass
class ThreadTuner:
    """Keeps the fastest thread count by measured decode-step time, re-trying the others.

    Steps are compared only within one *shape* (the number of sequences decoded together, one
    token each): a step of 4 sequences is slower than a step of 1 whatever the threads. The tuner
    runs the current best for ``probe_every`` steps of a shape, then ``probe_steps`` steps of the
    next candidate, and keeps whichever has the lower median (the newest ``window`` samples); a
    candidate must be ``margin`` faster to take over, so noise does not make it flap. When the
    current count's recent median is ``slowdown`` times its fastest step so far (another process
    took a core: spinning threads collapse), the next probe comes at once instead of after
    ``probe_every`` steps (measured: a 2-thread collapse at ~120 ms a step held for ~11 s before).
    """

    candidates: tuple[int, ...]
    probe_every: int = 96
    probe_steps: int = 4
    window: int = 12
    margin: float = 0.9
    slowdown: float = 2.0
    max_backoff: int = 8
    """A probe that loses doubles the wait before the next one of that shape, up to ``probe_every`` times
    this: on a machine that stays busy, the collapsing count is tried ~1 step in 800, not 4 in 96
    (with one core kept busy, a collapsed 2-thread step of SmolLM2 took 85 ms against 13-14 ms on 1 thread:
    4 such steps in every ~100 took a fifth of the time)."""
    abort: float = 3.0
    """A probe step this many times the current count's recent median ends the probe at once (one collapsed
    step, not ``probe_steps``), and the probe counts as lost."""
    _backoff: dict[int, int] = field(default_factory=dict)
    _floor: dict[tuple[int, int], float] = field(default_factory=dict)
    """(shape, threads) -> the fastest step seen."""
    _samples: dict[tuple[int, int], deque[float]] = field(default_factory=dict)
    _best: dict[int, int] = field(default_factory=dict)
    _since_probe: dict[int, int] = field(default_factory=dict)
    _probing: dict[int, tuple[int, int]] = field(default_factory=dict)
    """shape -> (candidate being tried, steps left)."""

    def __post_init__(self) -> None:
        if not self.candidates or any(c < 1 for c in self.candidates):
            raise ValueError(f"thread candidates must be positive, got {self.candidates}")

    def choose(self, shape: int) -> int:
        """The thread count for the next decode step of ``shape`` sequences."""
        best = self._best.get(shape, self.candidates[0])
        if len(self.candidates) == 1:
            return best
        probe = self._probing.get(shape)
        if probe is not None:
            return probe[0]
        # the first probe comes early (a busy machine should not wait long for the better count)
        unmeasured = any(not self._has(shape, c) for c in self.candidates)
        if unmeasured or self._slowed(shape, best):
            due = self.probe_steps * 2
        else:
            due = self.probe_every * self._backoff.get(shape, 1)
        if self._since_probe.get(shape, 0) >= due or not self._has(shape, best):
            others = [c for c in self.candidates if c != best]
            # the candidate measured longest ago (or never) is tried next
            nxt = min(others, key=lambda c: len(self._samples.get((shape, c), ())))
            if self._has(shape, best):
                self._probing[shape] = (nxt, self.probe_steps)
                self._since_probe[shape] = 0
                return nxt
        return best

    def record(self, shape: int, threads: int, seconds: float) -> None:
        """A decode step of ``shape`` sequences took ``seconds`` on ``threads`` threads."""
        samples = self._samples.setdefault((shape, threads), deque(maxlen=self.window))
        samples.append(seconds)
        key = (shape, threads)
        self._floor[key] = min(seconds, self._floor.get(key, seconds))
        probe = self._probing.get(shape)
        if probe is not None and probe[0] == threads:
            left = probe[1] - 1
            current = self._best.get(shape, self.candidates[0])
            hopeless = self._has(shape, current) and seconds > self.abort * self._median(shape, current)
            if left > 0 and not hopeless:
                self._probing[shape] = (threads, left)
                return
            del self._probing[shape]
            if hopeless:  # its older samples may be from a freer machine: no decision on them
                self._back_off(shape)
            else:
                self._decide(shape)
            return
        self._since_probe[shape] = self._since_probe.get(shape, 0) + 1
        self._best.setdefault(shape, threads)

    def best(self, shape: int) -> int:
        return self._best.get(shape, self.candidates[0])

    def _has(self, shape: int, threads: int) -> bool:
        return len(self._samples.get((shape, threads), ())) >= min(3, self.window)

    def _slowed(self, shape: int, threads: int) -> bool:
        """The count's newest steps are ``slowdown`` times its fastest: the machine got busier."""
        return (
            self._has(shape, threads) and self._median(shape, threads) > self.slowdown * self._floor[(shape, threads)]
        )

    def _median(self, shape: int, threads: int) -> float:
        # only the newest probe_steps samples of each: the machine's load is what it is now
        recent = list(self._samples[(shape, threads)])[-max(self.probe_steps, 3) :]
        return statistics.median(recent)

    def _back_off(self, shape: int) -> None:
        self._backoff[shape] = min(2 * self._backoff.get(shape, 1), self.max_backoff)

    def _decide(self, shape: int) -> None:
        current = self._best.get(shape, self.candidates[0])
        measured = [c for c in self.candidates if self._has(shape, c)]
        if current not in measured:
            if measured:
                self._best[shape] = min(measured, key=lambda c: self._median(shape, c))
            return
        fastest = min(measured, key=lambda c: self._median(shape, c))
        if fastest != current and self._median(shape, fastest) < self.margin * self._median(shape, current):
            self._best[shape] = fastest
            self._backoff[shape] = 1
        else:
            self._back_off(shape)
