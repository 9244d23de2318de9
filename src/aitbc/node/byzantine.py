"""Test-only misbehaviour of a real validator process (the perturbation harness's byzantine validator).

Nothing here runs unless the node was started with ``--test-byzantine`` (a hidden
flag): then, while ``DATA_DIR/byzantine`` names a behaviour, the node misbehaves
that way; deleting the file makes it honest again. Behaviours:

* ``equivocate``: every vote it casts goes out with a conflicting twin (a
  double vote: honest nodes report it and the chain slashes and jails it);
* ``future-time``: its proposals are dated ten years ahead (item 1: prevoted nil);
* ``drop-votes``: its proposals carry only its own precommit in ``last_commit``
  (item 2: invalid, prevoted nil);
* ``tamper``: every proposal it receives is relayed at once with the block's
  proposer signature altered (item 3: the relay is blamed, the genuine one counts).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import msgspec

from aitbc.node.p2p_messages import ProposalGossip, VoteGossip
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.vote import CommitCertificate, Vote, sign_vote

log = logging.getLogger("aitbc.node.byzantine")

BEHAVIOURS: Final = ("equivocate", "future-time", "drop-votes", "tamper")
TEN_YEARS_MS: Final = 10 * 365 * 24 * 3600 * 1000


class Byzantine:
    def __init__(self, switch: Path | None, key: KeyPair) -> None:
        self.switch = switch
        self.key = key

    @property
    def behaviour(self) -> str:
        if self.switch is None:
            return ""
        try:
            name = self.switch.read_text().strip()
        except OSError:
            return ""
        return name if name in BEHAVIOURS else ""

    def block_time(self, now_ms: int) -> int:
        return now_ms + TEN_YEARS_MS if self.behaviour == "future-time" else now_ms

    def last_commit(self, cert: CommitCertificate | None) -> CommitCertificate | None:
        if cert is None or self.behaviour != "drop-votes":
            return cert
        return msgspec.structs.replace(cert, signatures=[s for s in cert.signatures if s.validator == self.key.address])

    def twin_vote(self, vote: Vote) -> VoteGossip | None:
        """A conflicting second vote for the same height/round/step (signed without the sign guard)."""
        if self.behaviour != "equivocate":
            return None
        other = sha256(f"twin/{vote.height}/{vote.round}/{vote.kind}".encode()).hex()
        unsigned = msgspec.structs.replace(vote, block_hash=other, signature="")
        return VoteGossip(sign_vote(unsigned, self.key))

    def tampered(self, message: ProposalGossip) -> ProposalGossip | None:
        if self.behaviour != "tamper" or message.proposal.proposer == self.key.address:
            return None
        sig = message.block.proposer_signature
        altered = ("0" if sig[:1] != "0" else "1") + sig[1:]
        return ProposalGossip(message.proposal, msgspec.structs.replace(message.block, proposer_signature=altered))
