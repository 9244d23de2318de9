"""Blocks: a signed header committing to the txs (Merkle root) and the state after them."""

from __future__ import annotations

from typing import Final

import msgspec

from aitbc.protocol import codec
from aitbc.protocol.crypto import KeyPair, SigningKind, sha256, verify_signature
from aitbc.protocol.errors import InvalidSignature
from aitbc.protocol.merkle import compute_merkle_root
from aitbc.protocol.tx import Tx, tx_bytes
from aitbc.protocol.types import U64, Address, ChainId, Hash32, Height, SignatureHex, TimestampMs
from aitbc.protocol.vote import CommitCertificate

ZERO_HASH: Final = "00" * 32


class BlockHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    chain_id: ChainId
    height: Height
    time_ms: TimestampMs
    prev_hash: Hash32
    tx_root: Hash32
    tx_count: U64
    state_root: Hash32
    proposer: Address
    last_commit_hash: Hash32 = ZERO_HASH
    """``compute_last_commit_hash`` of the block's ``last_commit``: the block hash (what proposals and votes
    name) covers the precommits the block carries, so a relay cannot swap them."""


class Block(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    header: BlockHeader
    proposer_signature: SignatureHex
    txs: list[Tx]
    last_commit: CommitCertificate | None = None
    """BFT chains: the precommits the proposer saw for the previous block. Its effect (who missed
    signing, see ``aitbc.chain.validators``) is in the state root, which the header commits to."""


def compute_last_commit_hash(last_commit: CommitCertificate | None) -> str:
    return ZERO_HASH if last_commit is None else sha256(codec.encode(last_commit)).hex()


def header_bytes(header: BlockHeader) -> bytes:
    return codec.encode(header)


def block_hash(header: BlockHeader) -> str:
    """The block id: sha256 of the canonical header (the signature is not part of it)."""
    return sha256(header_bytes(header)).hex()


def compute_tx_root(tx_hashes: list[bytes]) -> str:
    return compute_merkle_root(tx_hashes).hex()


def compute_tx_root_of(txs: list[Tx]) -> str:
    return compute_tx_root([sha256(tx_bytes(tx)) for tx in txs])


def sign_header(header: BlockHeader, key: KeyPair) -> str:
    return key.sign(header.chain_id, SigningKind.BLOCK, header_bytes(header)).hex()


def verify_header_signature(header: BlockHeader, signature_hex: str) -> None:
    verify_signature(
        header.proposer, header.chain_id, SigningKind.BLOCK, header_bytes(header), bytes.fromhex(signature_hex)
    )


def block_bytes(block: Block) -> bytes:
    return codec.encode(block)


def block_from_bytes(raw: bytes) -> Block:
    block: Block = codec.decode(Block, raw)
    return block


def get_block_tamper_problem(block: Block) -> str | None:
    """Why this copy of a block is not what its header's proposer signed, or None if it is.

    Everything a validator acts on is bound to the header (and the header to the proposer's signature),
    so a copy altered on the way fails here; a relay that forwards it is to blame, not the proposer."""
    header = block.header
    try:
        verify_header_signature(header, block.proposer_signature)
    except (InvalidSignature, ValueError):
        return "the proposer signature does not verify"
    if header.tx_count != len(block.txs) or compute_tx_root_of(block.txs) != header.tx_root:
        return "the txs are not the ones the header commits to"
    if compute_last_commit_hash(block.last_commit) != header.last_commit_hash:
        return "last_commit is not the one the header commits to"
    return None
