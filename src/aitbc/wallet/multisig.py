"""Partially signed multisig spends: the ``MultisigTransfer`` JSON itself, approvals filled in as
members sign. Export it to a file, have each member add an approval (``aitbc wallet multisig sign``),
combine the files, send when enough members approved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from aitbc.protocol.crypto import SigningKind
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import (
    MultisigApproval,
    MultisigTransfer,
    add_multisig_approvals,
    tx_from_json_obj,
    tx_signing_bytes,
)

MULTISIG_SPEND_TYPES: Final = (MultisigTransfer,)

Signer = Callable[[str, SigningKind, bytes], bytes]
"""``sign(chain_id, kind, message)`` of one key (a ``KeyPair.sign`` or an unlocked daemon key)."""


def add_member_signature(tx: MultisigTransfer, address: str, sign: Signer) -> MultisigTransfer:
    """The tx with ``address``'s approval added (whether it is a member is the chain's rule)."""
    signature = sign(tx.chain_id, SigningKind.TX, tx_signing_bytes(tx))
    return add_multisig_approvals(tx, [MultisigApproval(signer=address, signature=signature.hex())])


def parse_spend(obj: Any) -> MultisigTransfer:
    tx = tx_from_json_obj(obj)
    if not isinstance(tx, MultisigTransfer):
        raise InvalidTx(TxRejection.MALFORMED, f"expected a multisig_transfer, got {type(tx).__name__}")
    return tx


def combine_spends(spends: Sequence[MultisigTransfer]) -> MultisigTransfer:
    """Merge the approvals of copies of one spend; refuse copies that differ in anything but approvals."""
    if not spends:
        raise ValueError("nothing to combine")
    first = spends[0]
    for other in spends[1:]:
        if tx_signing_bytes(other) != tx_signing_bytes(first):
            raise InvalidTx(TxRejection.MALFORMED, "the files hold different spends, not copies of one")
    combined = first
    for other in spends[1:]:
        combined = add_multisig_approvals(combined, other.approvals)
    return combined
