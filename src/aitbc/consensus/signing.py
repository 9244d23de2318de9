"""The double-sign rule a validator applies to itself, as a pure function.

A validator signs proposals and votes in strictly increasing (height, round,
step) order (step: proposal < prevote < precommit). Signing the same
(height, round, step) again is allowed only for the very same bytes (a resend
after a crash), which Ed25519 signs identically; anything else would be a
second, conflicting message and is refused. ``aitbc.node.signguard`` persists
the last signed position before a signature leaves the process.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from aitbc.protocol.types import U64, Hash32, Height


class SignStep(IntEnum):
    PROPOSAL = 0
    PREVOTE = 1
    PRECOMMIT = 2


class LastSigned(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    height: Height
    round: U64
    step: U64
    signed_hash: Hash32
    """sha256 of the bytes signed at that position."""
    locked_hash: str = ""
    """The block we last precommitted at this height (our lock), restored after a restart."""
    locked_round: int = -1


def get_resume_round(last: LastSigned | None, height: int) -> int:
    """The round a restarted validator starts ``height`` at: past every round it already signed in."""
    if last is None or last.height != height:
        return 0
    return last.round + 1


def is_sign_allowed(last: LastSigned | None, height: int, round_: int, step: int, signed_hash: str) -> bool:
    """May we sign ``signed_hash`` at this (height, round, step), given what we signed last?"""
    if last is None:
        return True
    position, previous = (height, round_, step), (last.height, last.round, last.step)
    if position > previous:
        return True
    return position == previous and signed_hash == last.signed_hash
