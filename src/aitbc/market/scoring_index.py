"""``MinerIndex``: the pool hub's registry in memory, so that ranking a job needs no full scan.

The scoring rules themselves live in ``aitbc.market.scoring``; this is the data structure that applies
them fast (per-model sorted lists keyed by score, refreshed as miners change).
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import replace

from aitbc.market.matching import JobRequirements
from aitbc.market.scoring import (
    _BOUND_EPSILON,
    Candidate,
    MinerState,
    ScoringConfig,
    _candidate,
    _Inverted,
    _static_partial,
    get_eligible_model,
    is_exploration_slot,
    is_new,
)


class MinerIndex:
    """The registry in memory, organised so that ``top`` needs no full scan.

    Per model name two lists (new and proven miners) of entries sorted best first by a key: the
    score as of when the entry was keyed (``t0``), i.e. with the age factor of then. Every change of
    anything else (an outcome, a registration, a load reported by a heartbeat) re-keys the miner, so
    at a later time the exact score can exceed the key only by the growth of the age factor since t0
    (≤ w_age·(now - t0)/age_ref, the factor's slope being at most 1/age_ref). ``top`` walks a list,
    skipping excluded miners, and stops when that bound, taken for the oldest t0 in the index, cannot
    lift the next entry above the k-th best found: the same answer as ``rank``. ``refresh`` re-keys old
    entries to keep the bound tight.
    """

    def __init__(self, config: ScoringConfig) -> None:
        self.config = config
        self.states: dict[str, MinerState] = {}
        self._lists: dict[tuple[str, bool], list[tuple[float, str, str]]] = {}  # (-key, miner, digest)
        self._links: dict[str, list[tuple[tuple[str, bool], tuple[float, str, str]]]] = {}
        self._static: dict[tuple[str, str], float] = {}  # (miner, digest) → static partial score
        self._keyed_at: dict[str, int] = {}  # miner → t0
        self._keyed_heap: list[tuple[int, str]] = []  # (t0, miner), stale items skipped lazily

    def __len__(self) -> int:
        return len(self.states)

    def get(self, miner: str) -> MinerState | None:
        return self.states.get(miner)

    def upsert(self, state: MinerState, now_ms: int | None = None) -> None:
        """Add or replace a miner (after a registration, an outcome or a stake change), keyed as of ``now_ms``
        (default: its last heartbeat)."""
        t0 = max(state.registered_at_ms, state.last_seen_ms if now_ms is None else now_ms)
        self._unlink(state.miner)
        self.states[state.miner] = state
        new = is_new(state, self.config)
        w = self.config.weights
        age = t0 - state.registered_at_ms
        dynamic = w.load * (1.0 - min(state.load, state.max_concurrency) / max(1, state.max_concurrency))
        dynamic += w.age * (age / (age + self.config.age_ref_ms))
        links = []
        for model in state.offer.models:
            static = _static_partial(state, model, self.config)
            self._static[(state.miner, model.digest)] = static
            item = (-(static + dynamic), state.miner, model.digest)
            entries = self._lists.setdefault((model.name, new), [])
            bisect.insort(entries, item)
            links.append(((model.name, new), item))
        self._links[state.miner] = links
        self._keyed_at[state.miner] = t0
        heapq.heappush(self._keyed_heap, (t0, state.miner))
        if len(self._keyed_heap) > 4 * len(self._keyed_at) + 1024:  # drop the stale items (bounded memory)
            self._keyed_heap = [(at, m) for m, at in self._keyed_at.items()]
            heapq.heapify(self._keyed_heap)

    def remove(self, miner: str) -> None:
        self._unlink(miner)
        self.states.pop(miner, None)
        self._keyed_at.pop(miner, None)

    def _unlink(self, miner: str) -> None:
        for list_key, item in self._links.pop(miner, []):
            entries = self._lists[list_key]
            i = bisect.bisect_left(entries, item)
            if i < len(entries) and entries[i] == item:
                del entries[i]
            self._static.pop((miner, item[2]), None)

    def _oldest_key_ms(self) -> int | None:
        heap = self._keyed_heap
        while heap and self._keyed_at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # re-keyed or removed since
        return heap[0][0] if heap else None

    def refresh(self, now_ms: int, older_than_ms: int, limit: int) -> int:
        """Re-key up to ``limit`` entries keyed before ``now_ms - older_than_ms``; returns how many."""
        done = 0
        while done < limit:
            oldest = self._oldest_key_ms()
            if oldest is None or oldest >= now_ms - older_than_ms:
                break
            miner = self._keyed_heap[0][1]
            self.upsert(self.states[miner], now_ms)
            done += 1
        return done

    def set_live(self, miner: str, last_seen_ms: int, load: int | None = None) -> bool:
        """A heartbeat. Liveness is checked at match time, so only a change of load re-keys the miner."""
        state = self.states.get(miner)
        if state is None:
            return False
        if load is None or load == state.load:
            self.states[miner] = replace(state, last_seen_ms=last_seen_ms)
        else:
            self.upsert(replace(state, last_seen_ms=last_seen_ms, load=load), last_seen_ms)
        return True

    def _top_of(
        self, entries: list[tuple[float, str, str]], job: JobRequirements, now_ms: int, k: int, slack: float
    ) -> list[tuple[float, _Inverted]]:
        config = self.config
        w = config.weights
        total = w.total
        age_ref = config.age_ref_ms
        best: list[tuple[float, _Inverted]] = []  # min-heap: the k best so far, worst on top
        seen: set[str] = set()  # a miner serving two digests of the model has two entries
        for neg_key, miner, _digest in entries:
            if len(best) >= k and (-neg_key + slack) / total + _BOUND_EPSILON < best[0][0]:
                break
            if miner in seen:
                continue
            seen.add(miner)
            state = self.states[miner]
            model = get_eligible_model(state, job, now_ms, config)
            if model is None:
                continue
            static = self._static[(miner, model.digest)]
            age = max(0, now_ms - state.registered_at_ms)
            load = 1.0 - min(state.load, state.max_concurrency) / max(1, state.max_concurrency)
            score = (static + w.load * load + w.age * (age / (age + age_ref))) / total
            item = (score, _Inverted(miner))
            if len(best) < k:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
        return best

    def top(self, job: JobRequirements, now_ms: int, k: int, job_id: str = "") -> list[Candidate]:
        """The best ``k`` eligible miners for the job, as ``rank(...)[:k]`` would return them."""
        if k <= 0:
            return []
        slot = is_exploration_slot(job_id, self.config.exploration_share)
        w = self.config.weights
        oldest = self._oldest_key_ms()
        drift = 1.0 if oldest is None else min(1.0, max(0, now_ms - oldest) / self.config.age_ref_ms)
        slack = w.age * drift
        found: list[tuple[bool, float, str]] = []
        for new in (True, False):
            entries = self._lists.get((job.model, new))
            if entries:
                exploration = slot and new
                found += [
                    (exploration, score, str(miner)) for score, miner in self._top_of(entries, job, now_ms, k, slack)
                ]
        found.sort(key=lambda f: (not f[0], -f[1], f[2]))  # as ``rank`` orders them
        return [
            _candidate(self.states[miner], job, now_ms, self.config, exploration) for exploration, _, miner in found[:k]
        ]

    def miners(self) -> list[MinerState]:
        return list(self.states.values())
