"""Consensus messages: proposals, prevotes/precommits, commit certificates and double-vote evidence.

A validator signs the canonical bytes of a proposal or vote (without the
signature) under the ``vote`` signature domain; a vote for ``block_hash == ""``
is a vote for nil. A commit certificate is the set of precommit signatures
that made a block final: anyone holding the validator set of that height can
check it (``verify_commit``), which is how a syncing node trusts a block it
did not see being agreed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from aitbc.protocol import codec
from aitbc.protocol.crypto import KeyPair, SigningKind, is_valid_signature
from aitbc.protocol.errors import InvalidBlock
from aitbc.protocol.types import U64, Address, ChainId, Hash32, Height, SignatureHex, Wire

_UNSIGNED: Final = frozenset({"signature"})

MaybeHash = Annotated[str, Meta(pattern=r"^([0-9a-f]{64})?$"), Wire.HEX]
"""A block hash, or ``""`` for nil."""


class VoteKind(StrEnum):
    PREVOTE = "prevote"
    PRECOMMIT = "precommit"


class Vote(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    chain_id: ChainId
    height: Height
    round: U64
    kind: Annotated[str, Meta(pattern=r"^(prevote|precommit)$"), Wire.STR]
    block_hash: MaybeHash
    validator: Address
    signature: SignatureHex = ""


class Proposal(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``pol_round`` is the round of the proof-of-lock the proposer re-proposes under, plus one (0: none)."""

    chain_id: ChainId
    height: Height
    round: U64
    block_hash: Hash32
    pol_round: U64
    proposer: Address
    signature: SignatureHex = ""


class CommitSig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    validator: Address
    signature: SignatureHex


class CommitCertificate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The precommits for ``block_hash`` at ``height``/``round`` that made it final."""

    chain_id: ChainId
    height: Height
    round: U64
    block_hash: Hash32
    signatures: list[CommitSig]


class DuplicateVoteEvidence(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Two votes of one validator for one height/round/kind naming different blocks."""

    vote_a: Vote
    vote_b: Vote


def vote_signing_bytes(vote: Vote) -> bytes:
    return codec.encode(vote, omit=_UNSIGNED)


def proposal_signing_bytes(proposal: Proposal) -> bytes:
    return codec.encode(proposal, omit=_UNSIGNED)


def sign_vote(vote: Vote, key: KeyPair) -> Vote:
    if key.address != vote.validator:
        raise ValueError("key does not belong to the voting validator")
    signature = key.sign(vote.chain_id, SigningKind.VOTE, vote_signing_bytes(vote))
    return msgspec.structs.replace(vote, signature=signature.hex())


def sign_proposal(proposal: Proposal, key: KeyPair) -> Proposal:
    if key.address != proposal.proposer:
        raise ValueError("key does not belong to the proposer")
    signature = key.sign(proposal.chain_id, SigningKind.VOTE, proposal_signing_bytes(proposal))
    return msgspec.structs.replace(proposal, signature=signature.hex())


def _valid_sig(address: str, chain_id: str, message: bytes, signature: str) -> bool:
    if not signature:
        return False
    try:
        return is_valid_signature(address, chain_id, SigningKind.VOTE, message, bytes.fromhex(signature))
    except Exception:  # a malformed address or signature is simply not valid
        return False


def is_valid_vote_signature(vote: Vote) -> bool:
    return _valid_sig(vote.validator, vote.chain_id, vote_signing_bytes(vote), vote.signature)


def is_valid_proposal_signature(proposal: Proposal) -> bool:
    return _valid_sig(proposal.proposer, proposal.chain_id, proposal_signing_bytes(proposal), proposal.signature)


def commit_vote(cert: CommitCertificate, sig: CommitSig) -> Vote:
    """The precommit a certificate entry stands for."""
    return Vote(
        chain_id=cert.chain_id,
        height=cert.height,
        round=cert.round,
        kind=VoteKind.PRECOMMIT.value,
        block_hash=cert.block_hash,
        validator=sig.validator,
        signature=sig.signature,
    )


def compute_commit_power(cert: CommitCertificate, powers: Mapping[str, int]) -> int:
    """Voting power behind the certificate's valid, distinct signatures of known validators."""
    seen: set[str] = set()
    total = 0
    for sig in cert.signatures:
        if sig.validator in seen or sig.validator not in powers:
            continue
        if is_valid_vote_signature(commit_vote(cert, sig)):
            seen.add(sig.validator)
            total += powers[sig.validator]
    return total


def is_quorum(power: int, total_power: int) -> bool:
    """More than two thirds of the total voting power (integer arithmetic)."""
    return 3 * power > 2 * total_power


def verify_commit(
    cert: CommitCertificate, chain_id: str, height: int, block_hash: str, powers: Mapping[str, int]
) -> None:
    """Raise ``InvalidBlock`` unless ``cert`` finalizes ``block_hash`` at ``height`` with > 2/3 of ``powers``."""
    if cert.chain_id != chain_id or cert.height != height or cert.block_hash != block_hash:
        raise InvalidBlock(f"commit certificate is not for block {block_hash} at height {height}")
    power = compute_commit_power(cert, powers)
    if not is_quorum(power, sum(powers.values())):
        raise InvalidBlock(f"commit certificate carries {power} of {sum(powers.values())} voting power; needs > 2/3")


def compute_evidence_key(evidence: DuplicateVoteEvidence) -> str:
    """One key per offence (validator, height, round, kind): an offence is punished once."""
    v = evidence.vote_a
    return f"{v.validator}/{v.height}/{v.round}/{v.kind}"


def get_evidence_problem(evidence: DuplicateVoteEvidence, chain_id: str) -> str | None:
    """Why the evidence does not prove a double vote, or None if it does."""
    a, b = evidence.vote_a, evidence.vote_b
    if a.chain_id != chain_id or b.chain_id != chain_id:
        return "the votes are for another chain"
    if (a.validator, a.height, a.round, a.kind) != (b.validator, b.height, b.round, b.kind):
        return "the votes are not from one validator for one height, round and step"
    if a.block_hash == b.block_hash:
        return "the votes do not conflict"
    if not (is_valid_vote_signature(a) and is_valid_vote_signature(b)):
        return "a vote signature does not verify"
    return None


def make_evidence(a: Vote, b: Vote) -> DuplicateVoteEvidence:
    """Canonical order (by block hash), so the same offence always encodes the same way."""
    first, second = (a, b) if a.block_hash < b.block_hash else (b, a)
    return DuplicateVoteEvidence(vote_a=first, vote_b=second)
