"""The one error hierarchy of AITBC.

Every failure the platform reports on purpose is an ``AitbcError``; shells map
the tree onto transport codes (HTTP status, JSON-RPC error code) in one place
each, so a caller always gets a machine-readable ``reason`` plus a sentence a
person understands.

    AitbcError
    ├── EncodingError            bytes/JSON that do not decode to a protocol type
    ├── InvalidAddress           bad bech32m string, prefix or checksum
    ├── InvalidSignature         a signature that does not verify for its domain
    ├── InvalidTx                a tx that breaks a chain rule (reason: TxRejection)
    │   └── MempoolRejected      a tx the mempool refuses (full, duplicate, window)
    ├── InvalidBlock             a block that breaks a chain rule
    ├── InvalidRequest           a request body that breaks its message type (names the field)
    ├── InvalidInput             a job request that breaks a job's shape rules
    ├── InputTooLarge            a job's input over its size limit
    ├── UnknownModel             no live miner serves the model a job asks for
    ├── UnknownMiner             a miner that is not registered
    ├── NotFound                 unknown block / tx / account / key
    ├── ConfigError              bad settings, genesis or data directory
    ├── StorageError             the store is missing, corrupt or from another chain
    └── RemoteError              a service answered with an error (code + reason), or could not be reached
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class TxRejection(StrEnum):
    """Machine-readable reasons for refusing a tx; stable public strings."""

    MALFORMED = "malformed"
    UNKNOWN_TX_TYPE = "unknown_tx_type"
    BAD_SIGNATURE = "bad_signature"
    WRONG_CHAIN_ID = "wrong_chain_id"
    NONCE_TOO_LOW = "nonce_too_low"
    NONCE_TOO_HIGH = "nonce_too_high"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    ZERO_AMOUNT = "zero_amount"
    AMOUNT_OVERFLOW = "amount_overflow"
    FEE_TOO_LOW = "fee_too_low"
    TX_TOO_LARGE = "tx_too_large"
    DUPLICATE = "duplicate"
    REPLACEMENT_UNDERPRICED = "replacement_underpriced"
    MEMPOOL_FULL = "mempool_full"
    SENDER_LIMIT = "sender_limit"
    ESCROW_EXISTS = "escrow_exists"
    NO_ESCROW = "no_escrow"
    ALREADY_SETTLED = "already_settled"
    ALREADY_REFUNDED = "already_refunded"
    ESCROW_EXPIRED = "escrow_expired"
    DEADLINE_NOT_REACHED = "deadline_not_reached"
    BAD_DEADLINE = "bad_deadline"
    NOT_COORDINATOR = "not_coordinator"
    BAD_RECEIPT = "bad_receipt"
    TOTAL_ABOVE_ESCROW = "total_above_escrow"
    BAD_MULTISIG_POLICY = "bad_multisig_policy"
    MULTISIG_EXISTS = "multisig_exists"
    NOT_MULTISIG = "not_multisig"
    NOT_MULTISIG_MEMBER = "not_multisig_member"
    MULTISIG_THRESHOLD_NOT_MET = "multisig_threshold_not_met"
    BAD_ZK_PROOF = "bad_zk_proof"
    # staking and evidence (aitbc.chain.validators)
    STAKE_TOO_LOW = "stake_too_low"
    DELEGATION_TOO_LOW = "delegation_too_low"
    NOT_A_VALIDATOR = "not_a_validator"
    INSUFFICIENT_STAKE = "insufficient_stake"
    BAD_EVIDENCE = "bad_evidence"
    EVIDENCE_TOO_OLD = "evidence_too_old"
    ALREADY_PUNISHED = "already_punished"
    # governance (aitbc.chain.governance)
    BAD_PROPOSAL = "bad_proposal"
    BAD_PARAM_CHANGE = "bad_param_change"
    TOO_MANY_PROPOSALS = "too_many_proposals"
    NO_PROPOSAL = "no_proposal"
    PROPOSAL_CLOSED = "proposal_closed"
    # audited inference (aitbc.chain.audits)
    BOND_TOO_LOW = "bond_too_low"
    NO_BOND = "no_bond"
    NO_AUDIT = "no_audit"
    NOT_AUDITOR = "not_auditor"
    AUDIT_CLOSED = "audit_closed"
    # deposits and batched settlement (aitbc.chain.deposits)
    NO_DEPOSIT = "no_deposit"
    NOT_DEPOSIT_OWNER = "not_deposit_owner"
    BAD_DEPOSIT_TERMS = "bad_deposit_terms"
    WITHDRAWAL_PENDING = "withdrawal_pending"
    ALREADY_PAID = "already_paid"
    BATCH_TOO_LARGE = "batch_too_large"


class AitbcError(Exception):
    """Root of every deliberate AITBC failure."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message}


class EncodingError(AitbcError):
    reason = "malformed"


class InvalidAddress(AitbcError):
    reason = "invalid_address"


class InvalidSignature(AitbcError):
    reason = "bad_signature"


class InvalidTx(AitbcError):
    def __init__(self, rejection: TxRejection, message: str) -> None:
        super().__init__(message, reason=rejection.value)
        self.rejection = rejection


class MempoolRejected(InvalidTx):
    pass


class InvalidBlock(AitbcError):
    reason = "invalid_block"


class InvalidRequest(AitbcError):
    """A request body that does not decode to its message type; ``path`` names the offending field."""

    reason = "invalid_request"

    def __init__(self, message: str, *, path: tuple[str | int, ...] = ()) -> None:
        field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        super().__init__(f"{field}: {message}" if field else message)
        self.path = path
        self.field = field
        self.detail = message

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "details": [{"loc": ["body", *self.path], "message": self.detail}]}


class InvalidInput(AitbcError):
    """A job request that decodes but breaks a job's shape rules (HTTP 422, like any other invalid field)."""

    reason = "invalid_input"


class InputTooLarge(AitbcError):
    reason = "input_too_large"


class UnknownModel(AitbcError):
    """No live miner serves the model a job asks for."""

    reason = "unknown_model"


class UnknownMiner(AitbcError):
    """A miner that is not registered (with the coordinator or the pool hub)."""

    reason = "unknown_miner"


class NotFound(AitbcError):
    reason = "not_found"


class ConfigError(AitbcError):
    reason = "config_error"


class StorageError(AitbcError):
    reason = "storage_error"


class RemoteError(AitbcError):
    """An error reported by another AITBC service (JSON-RPC error or HTTP problem), or no answer at all."""

    reason = "remote_error"

    def __init__(
        self, message: str, *, code: int | None = None, reason: str | None = None, data: object = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.code = code
        self.data = data
