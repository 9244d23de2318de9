"""Proposer rotation weighted by voting power, a pure function of (validator set, height, round).

For sets whose total power (divided by the powers' gcd) is at most ``MAX_CYCLE`` the
proposers follow a smooth weighted round robin cycle: each validator proposes exactly
``power`` times per cycle, spread out (power 2:1:1 gives A B C A A B C A ...), and
consecutive rounds of one height move to the next slot, so a crashed proposer costs one
round. Larger sets pick the slot by hashing (height, round) into the cumulative powers:
proportional in expectation, still deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

from aitbc.protocol.crypto import sha256

MAX_CYCLE: Final = 4_096


@lru_cache(maxsize=64)
def _cycle(powers: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    """Smooth weighted round robin: each step every validator gains its power, the richest proposes
    and pays the total (ties: lower address)."""
    total = sum(p for _, p in powers)
    current = {v: 0 for v, _ in powers}
    order: list[str] = []
    for _ in range(total):
        for v, p in powers:
            current[v] += p
        chosen = max(powers, key=lambda vp: current[vp[0]])[0]  # first maximum: the lower address
        current[chosen] -= total
        order.append(chosen)
    return tuple(order)


def _reduced(powers: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    items = sorted((v, p) for v, p in powers.items() if p > 0)
    if not items:
        raise ValueError("the validator set has no voting power")
    divisor = math.gcd(*(p for _, p in items))
    return tuple((v, p // divisor) for v, p in items)


def get_proposer(powers: Mapping[str, int], height: int, round_: int) -> str:
    """The validator that proposes at ``height`` / ``round_``."""
    reduced = _reduced(powers)
    total = sum(p for _, p in reduced)
    if total <= MAX_CYCLE:
        cycle = _cycle(reduced)
        return cycle[(height + round_) % total]
    slot = int.from_bytes(sha256(height.to_bytes(8, "big") + round_.to_bytes(8, "big"))[:8], "big") % total
    for v, p in reduced:
        if slot < p:
            return v
        slot -= p
    raise AssertionError("unreachable")  # pragma: no cover
