"""Rules on how a miner may use the job queue, beyond the lifecycle of one job.

A release (``on_release``) hands a job back without spending one of its attempts: a miner that shuts down
mid-job must not cost the client an attempt. Unlimited, that lets a miner hold a job forever by claiming
and releasing it in a loop. So a miner gets ``free_releases`` within ``window_ms``; every release past that
counts against it as a failed job (``is_release_over_allowance``), and a job it released may not go back to
it for ``cooldown_ms`` (``is_reclaim_allowed``), so the queue offers it to someone else first.

A heartbeat names the jobs a miner is running: never more than the slots it registered
(``max_concurrency``), each of which costs the coordinator a lease lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReleaseAllowance:
    free_releases: int = 3
    window_ms: int = 600_000
    cooldown_ms: int = 30_000


def compute_recent_releases(release_times_ms: Sequence[int], now_ms: int, allowance: ReleaseAllowance) -> list[int]:
    """The release times still inside the window (oldest first), the only ones that count."""
    return [t for t in release_times_ms if now_ms - t < allowance.window_ms]


def is_release_over_allowance(recent_releases: int, allowance: ReleaseAllowance) -> bool:
    """Does a miner that released ``recent_releases`` jobs in the window (this one included) pay for it?"""
    return recent_releases > allowance.free_releases


def is_reclaim_allowed(released_by: str | None, released_at_ms: int | None, miner: str, now_ms: int,
                       allowance: ReleaseAllowance) -> bool:  # fmt: skip
    """May ``miner`` claim a job that ``released_by`` handed back at ``released_at_ms``?"""
    if released_by != miner or released_at_ms is None:
        return True
    return now_ms - released_at_ms >= allowance.cooldown_ms


def is_heartbeat_within_slots(lease_count: int, max_concurrency: int) -> bool:
    """A heartbeat carries at most one lease per slot the miner registered."""
    return lease_count <= max_concurrency
