"""The tx kinds of the chain's modules: governance (``aitbc.chain.governance``) and audited inference
(``aitbc.chain.audits``). Members of the ``Tx`` union in ``aitbc.protocol.tx``."""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

import msgspec
from msgspec import Meta

from aitbc.protocol.job import JobId, ModelDigest
from aitbc.protocol.tx_base import TxBase
from aitbc.protocol.types import U64, Amount, Hash32, Height, SignatureHex, Wire

PROPOSAL_KINDS: Final = ("param_change", "text", "treasury_spend", "software_upgrade")
VOTE_OPTIONS: Final = ("yes", "no", "abstain", "no_with_veto")
MAX_PARAM_CHANGES: Final = 16


class ParamChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Set one chain parameter, named by its dotted path in ``ChainParams`` (``protocol_fee_bps``,
    ``staking.jail_blocks``); every governable parameter is an integer (``aitbc.chain.governance``)."""

    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z_]+(\.[a-z_]+)?$"), Wire.STR]
    value: U64


class SubmitProposal(TxBase, frozen=True, kw_only=True, tag="submit_proposal"):
    """Put a proposal to the stakers, with an opening ``deposit`` (``docs/governance.md``).

    ``proposal_kind`` decides which of the other fields matter: ``param_change`` → ``changes`` and
    ``activation_height`` (0: the block after the vote ends); ``treasury_spend`` → ``recipient`` and
    ``spend`` (paid from the reward pool); ``software_upgrade`` → ``activation_height`` and
    ``upgrade_version``; ``text`` → only the title and description."""

    proposal_kind: Annotated[str, Meta(pattern=r"^(param_change|text|treasury_spend|software_upgrade)$"), Wire.STR]
    title: Annotated[str, Meta(min_length=1, max_length=140), Wire.STR]
    description: Annotated[str, Meta(max_length=4_000), Wire.STR] = ""
    changes: Annotated[list[ParamChange], Meta(max_length=MAX_PARAM_CHANGES)] = msgspec.field(default_factory=list)
    recipient: Annotated[str, Meta(max_length=90), Wire.STR] = ""
    spend: Amount = 0
    activation_height: Height = 0
    upgrade_version: Annotated[str, Meta(max_length=64), Wire.STR] = ""
    deposit: Amount = 0
    signature: SignatureHex = ""

    __text_fields__: ClassVar[tuple[str, ...]] = ("title", "description", "upgrade_version")


class DepositProposal(TxBase, frozen=True, kw_only=True, tag="deposit_proposal"):
    """Add ``amount`` to a proposal's deposit; voting opens once the deposit reaches ``min_deposit``."""

    proposal_id: U64
    amount: Amount
    signature: SignatureHex = ""


class GovernanceVote(TxBase, frozen=True, kw_only=True, tag="vote"):
    """Vote on a proposal in its voting period; weighted at the tally by the sender's bonded stake (a
    validator's vote also carries every delegation to it whose delegator did not vote)."""

    proposal_id: U64
    option: Annotated[str, Meta(pattern=r"^(yes|no|abstain|no_with_veto)$"), Wire.STR]
    signature: SignatureHex = ""


GOVERNANCE_TX_TYPES: Final[tuple[type[TxBase], ...]] = (SubmitProposal, DepositProposal, GovernanceVote)


class BondMiner(TxBase, frozen=True, kw_only=True, tag="bond_miner"):
    """Bond ``amount`` as a miner (audited jobs, auditing) and declare the model digests it serves."""

    amount: Amount
    models: Annotated[list[ModelDigest], Meta(max_length=16)] = msgspec.field(default_factory=list)
    signature: SignatureHex = ""


class UnbondMiner(TxBase, frozen=True, kw_only=True, tag="unbond_miner"):
    """Start returning ``amount`` of the miner bond; it stays slashable until released."""

    amount: Amount
    signature: SignatureHex = ""


class SubmitAudit(TxBase, frozen=True, kw_only=True, tag="submit_audit"):
    """The output hash of a re-execution, from the job's auditor or one of its dispute referees."""

    job_id: JobId
    output_hash: Hash32
    signature: SignatureHex = ""


AUDIT_TX_TYPES: Final[tuple[type[TxBase], ...]] = (BondMiner, UnbondMiner, SubmitAudit)
