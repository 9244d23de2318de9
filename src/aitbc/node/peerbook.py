"""Who may talk to this node: misbehaviour scores by node key and by IP, bans, inbound caps, rate limits.

A score belongs to a *name* (``key:<address>`` or ``ip:<host>``), not to a
connection, so reconnecting does not reset it. Scores recover slowly once a name
behaves (``recover_after_s``, then ``recover_per_s``) up to their start value; a name whose score reaches zero
is banned, for longer each time it is banned again (up to ``max_ban_s``), and
after a ban it starts again from zero, not from full. An IP starts with more
points than a key (``ip_start``): one misbehaving node key is banned before its
address is, but an attacker who rotates keys on one address runs out of
address points after a few keys. The book keeps at most ``max_names`` names
(the least recently touched go first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

MAX_NAMES: Final = 10_000


@dataclass(frozen=True, slots=True)
class P2PLimits:
    """Every p2p limit in one place (``NodeSettings`` fills it; the docs list them)."""

    max_frame: int = 32 * 1024 * 1024
    """Largest frame of an authenticated peer (a block sync batch)."""
    pre_auth_frame: int = 4 * 1024
    """Largest frame before the peer proved its node key (the handshake is a few hundred bytes)."""
    max_inbound: int = 64
    """Inbound connections (authenticated or still in the handshake) at once."""
    max_inbound_per_ip: int = 8
    key_start: int = 100
    ip_start: int = 400
    recover_after_s: float = 60.0
    """Points start coming back this long after a name's last penalty (or ban end) ..."""
    recover_per_s: float = 0.1
    """... at this rate, up to the start score."""
    ban_s: float = 30.0
    max_ban_s: float = 3_600.0
    status_per_s: float = 4.0
    """Status messages per peer per second (honest nodes send 2) before they are dropped and penalised."""
    sync_per_s: float = 10.0
    """Sync requests per peer per second served; more are dropped (an honest asker asks again)."""
    future_bytes_per_peer: int = 8 * 1024 * 1024
    """Bytes of verified future-height proposals and votes buffered per peer."""
    future_bytes_total: int = 64 * 1024 * 1024
    future_heights: int = 2
    """How far ahead of the height being decided messages are buffered (further: dropped, sync asked)."""


@dataclass(slots=True)
class _Entry:
    score: float
    at: float
    """When the score was last brought up to date."""
    quiet_since: float
    """The last penalty or the end of the last ban: recovery starts ``recover_after_s`` later."""
    banned_until: float = 0.0
    bans: int = 0


class PeerBook:
    def __init__(self, limits: P2PLimits | None = None, max_names: int = MAX_NAMES) -> None:
        self.limits = limits or P2PLimits()
        self.max_names = max_names
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _start(self, name: str) -> float:
        return float(self.limits.ip_start if name.startswith("ip:") else self.limits.key_start)

    def _entry(self, name: str, now: float) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            entry = _Entry(self._start(name), now, now)
            self._entries[name] = entry
            if len(self._entries) > self.max_names:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(name)
            since = max(entry.at, entry.quiet_since + self.limits.recover_after_s, entry.banned_until)
            if now > since:
                recovered = entry.score + (now - since) * self.limits.recover_per_s
                entry.score = min(self._start(name), recovered)
            entry.at = max(entry.at, now)
        return entry

    def score(self, name: str, now: float) -> float:
        return self._entry(name, now).score

    def is_banned(self, name: str, now: float) -> bool:
        entry = self._entries.get(name)
        return entry is not None and entry.banned_until > now

    def banned_any(self, names: tuple[str, ...], now: float) -> bool:
        return any(self.is_banned(name, now) for name in names)

    def penalize(self, names: tuple[str, ...], penalty: int, now: float) -> list[str]:
        """Take ``penalty`` points from each name; returns the names this banned."""
        banned: list[str] = []
        for name in names:
            entry = self._entry(name, now)
            if entry.banned_until > now:
                continue
            entry.score -= penalty
            entry.quiet_since = now
            if entry.score <= 0:
                entry.score = 0.0
                entry.bans += 1
                entry.banned_until = now + min(self.limits.max_ban_s, self.limits.ban_s * 2 ** (entry.bans - 1))
                banned.append(name)
        return banned


def key_name(address: str) -> str:
    return f"key:{address}"


def ip_name(host: str) -> str:
    return f"ip:{host}"


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
