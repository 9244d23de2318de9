"""The p2p wire messages (msgpack, tagged) and their encoding; the transport is ``aitbc.node.p2p``."""

from __future__ import annotations

from typing import Final

import msgspec

from aitbc.protocol.block import Block
from aitbc.protocol.crypto import sha256
from aitbc.protocol.tx import Tx
from aitbc.protocol.vote import CommitCertificate, Proposal, Vote


class Hello(msgspec.Struct, frozen=True, tag="hello"):
    """The first (encrypted) frame each way: who we are, and the node key's signature over the session
    challenge derived from this connection's ephemeral key exchange."""

    chain_id: str
    genesis_hash: str
    address: str
    signature: str


class TxGossip(msgspec.Struct, frozen=True, tag="txs"):
    txs: list[Tx]


class ProposalGossip(msgspec.Struct, frozen=True, tag="proposal"):
    proposal: Proposal
    block: Block


class VoteGossip(msgspec.Struct, frozen=True, tag="vote"):
    vote: Vote


class Status(msgspec.Struct, frozen=True, tag="status"):
    height: int
    """The height this node is deciding (its head + 1)."""
    round: int


class SyncRequest(msgspec.Struct, frozen=True, tag="sync_request"):
    from_height: int


class CommittedBlock(msgspec.Struct, frozen=True):
    block: Block
    commit: CommitCertificate


class SyncBlocks(msgspec.Struct, frozen=True, tag="sync_blocks"):
    blocks: list[CommittedBlock]


Message = Hello | TxGossip | ProposalGossip | VoteGossip | Status | SyncRequest | SyncBlocks

_KINDS: Final[dict[type, str]] = {
    Hello: "hello",
    TxGossip: "txs",
    ProposalGossip: "proposal",
    VoteGossip: "vote",
    Status: "status",
    SyncRequest: "sync_request",
    SyncBlocks: "sync_blocks",
}

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def get_message_kind(message: Message) -> str:
    """The wire tag of a message (the ``type`` label of the p2p metrics)."""
    return _KINDS[type(message)]


def get_message_height(message: Message) -> int:
    """The height a proposal or vote is for; -1 for messages that belong to no height."""
    if isinstance(message, ProposalGossip):
        return message.proposal.height
    if isinstance(message, VoteGossip):
        return message.vote.height
    return -1


def encode_message(message: Message) -> bytes:
    return _encoder.encode(message)


def decode_message(body: bytes) -> Message:
    """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` for bytes that are no message."""
    message: Message = _decoder.decode(body)
    return message


def message_key(message: Message) -> bytes:
    """The de-duplication key of a gossiped message."""
    return sha256(_encoder.encode(message))


def handshake_message(chain_id: str, challenge: bytes) -> bytes:
    """What a node key signs in the handshake: the session challenge, bound to the chain."""
    return challenge + chain_id.encode()
