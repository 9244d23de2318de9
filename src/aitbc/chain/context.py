"""What a rule may know about where it runs: the block and the tx being executed.

Rules take one context object instead of loose ``height`` / ``tx_hash`` /
``proposer`` parameters, so a rule cannot run with a default height or an empty
tx hash by accident: whoever builds or applies a block makes exactly one
``BlockContext``, and each tx gets its ``TxContext`` from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aitbc.chain.params import ChainParams
from aitbc.protocol.crypto import SignatureCheck
from aitbc.protocol.vote import CommitCertificate

SignatureOracle = Callable[[SignatureCheck], bool]
"""Answers whether a signature check is known to hold (never True for one that does not)."""


@dataclass(frozen=True, slots=True)
class BlockContext:
    """The block being built or applied, as far as it is known before its txs run.

    ``prev_hash`` is the parent's hash; the block's own hash depends on the state
    root and is therefore not known to the rules (as in Ethereum and CometBFT)."""

    chain_id: str
    height: int
    time_ms: int
    proposer: str
    params: ChainParams
    prev_hash: str
    last_commit: CommitCertificate | None = None
    """The precommits the block carries for its parent (BFT chains); ``None`` on PoA chains."""
    genesis_params: ChainParams | None = None
    """The parameters genesis set; ``params`` are these with every enacted governance change applied
    (``aitbc.chain.governance.compute_enactment``). ``None``: ``params`` are genesis's."""
    is_known_signature: SignatureOracle | None = None
    """Signature checks the node already ran (in bulk, when it admitted the txs): True means it held.
    Only an optimisation: a check it does not vouch for is run by the rule itself."""

    def tx(self, tx_hash: str, index: int) -> TxContext:
        """The context of the ``index``-th tx of this block, whose hash is ``tx_hash``."""
        return TxContext(self, tx_hash, index)


@dataclass(frozen=True, slots=True)
class TxContext:
    """One tx inside one block: its hash (events cite it) and its position."""

    block: BlockContext
    tx_hash: str
    index: int

    @property
    def height(self) -> int:
        return self.block.height

    @property
    def proposer(self) -> str:
        return self.block.proposer

    @property
    def chain_id(self) -> str:
        return self.block.chain_id

    @property
    def params(self) -> ChainParams:
        return self.block.params
