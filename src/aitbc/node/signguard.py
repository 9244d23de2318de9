"""Crash-safe signing of consensus messages: never two conflicting votes, even across ``kill -9``.

Before a proposal or vote signature is made, the (height, round, step) and
the hash of the signed bytes are written to ``sign_state.json`` with fsync
(``atomic_write``); only then is the message signed and handed out. A process
killed at any point restarts with a position at least as new as anything it
ever sent, so it refuses to sign anything conflicting (``is_sign_allowed``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec

from aitbc.consensus.signing import LastSigned, SignStep, is_sign_allowed
from aitbc.protocol.crypto import KeyPair, sha256_hex
from aitbc.protocol.errors import AitbcError, StorageError
from aitbc.protocol.vote import (
    Proposal,
    Vote,
    VoteKind,
    proposal_signing_bytes,
    sign_proposal,
    sign_vote,
    vote_signing_bytes,
)
from aitbc.runtime.files import atomic_write


class DoubleSignRefused(AitbcError):
    reason = "double_sign_refused"


class SignGuard:
    def __init__(self, path: Path, key: KeyPair) -> None:
        self.path = path
        self.key = key
        self._lock = threading.Lock()
        self.last = self._load()

    def _load(self) -> LastSigned | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return msgspec.json.decode(raw, type=LastSigned)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            # Never guess: signing from a wrong position could equivocate.
            raise StorageError(f"{self.path}: unreadable sign state ({exc}); refusing to sign") from None

    def _reserve(
        self, height: int, round_: int, step: SignStep, signed: bytes, lock: tuple[str, int] | None = None
    ) -> None:
        signed_hash = sha256_hex(signed)
        if not is_sign_allowed(self.last, height, round_, step, signed_hash):
            raise DoubleSignRefused(
                f"refusing to sign at height {height} round {round_} step {step.name}: already signed up to {self.last}"
            )
        locked_hash, locked_round = lock if lock is not None else ("", -1)
        if lock is None and self.last is not None and self.last.height == height:
            locked_hash, locked_round = self.last.locked_hash, self.last.locked_round
        position = LastSigned(
            height=height,
            round=round_,
            step=step,
            signed_hash=signed_hash,
            locked_hash=locked_hash,
            locked_round=locked_round,
        )
        if position != self.last:
            atomic_write(self.path, msgspec.json.encode(position), mode=0o600)
            self.last = position

    def sign_vote(self, vote: Vote) -> Vote:
        step = SignStep.PREVOTE if vote.kind == VoteKind.PREVOTE else SignStep.PRECOMMIT
        lock = (vote.block_hash, vote.round) if step == SignStep.PRECOMMIT and vote.block_hash else None
        with self._lock:
            self._reserve(vote.height, vote.round, step, vote_signing_bytes(vote), lock)
            return sign_vote(vote, self.key)

    def sign_proposal(self, proposal: Proposal) -> Proposal:
        with self._lock:
            self._reserve(proposal.height, proposal.round, SignStep.PROPOSAL, proposal_signing_bytes(proposal))
            return sign_proposal(proposal, self.key)
