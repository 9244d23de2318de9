"""The one error hierarchy of AITBC.

Every failure the platform reports on purpose is an ``AitbcError``. Each class declares, once, how it
goes over the wire: ``http_status`` (REST services) and ``rpc_code`` (JSON-RPC: the node, the wallet
daemon); ``aitbc.runtime.errors`` reads them and renders the one problem body
``{"error": {"reason", "message", …}}``, so a caller always gets a machine-readable ``reason`` plus a
sentence a person understands. A module that needs a more specific error subclasses one of these
(e.g. ``JobRuleViolation(Conflict)``, ``InvalidReceipt``), inheriting its status and code.

    AitbcError                   HTTP  JSON-RPC
    ├── EncodingError            400   -32602   bytes/JSON that do not decode to a protocol type
    ├── InvalidAddress           400   -32602   bad bech32m string, prefix or checksum
    ├── InvalidSignature         400   -32602   a signature that does not verify for its domain
    ├── InvalidTx                400   -32001   a tx that breaks a chain rule (reason: TxRejection)
    │   └── MempoolRejected      400   -32001   a tx the mempool refuses (full, duplicate, window)
    ├── InvalidBlock             400   -32602   a block that breaks a chain rule
    ├── InvalidRequest           422   -32602   a request body that breaks its message type (names the field)
    ├── InvalidInput             422   -32602   a job request that breaks a job's shape rules
    ├── InputTooLarge            413   -32602   a job's input over its size limit
    ├── UnknownModel             422   -32602   no live miner serves the model a job asks for
    ├── Unauthorized             401   -32010   missing or wrong credentials (API key, token, signature)
    ├── Forbidden                403   -32011   known caller, refused (unregistered miner, wrong passphrase)
    │   └── UnknownMiner         403   -32011   a miner that is not registered with the coordinator
    ├── RateLimited              429   -32013   too many requests; ``retry_after`` seconds
    ├── PaymentRequired          402   -32602   a paid job's escrow or deposit is missing or does not fit
    ├── Conflict                 409   -32012   the state changed or does not allow it (job rules, locked wallet)
    ├── NotFound                 404   -32004   unknown block / tx / account / key / job / miner
    ├── ConfigError              400   -32602   bad settings, genesis or data directory
    ├── StorageError             500   -32603   the store is missing, corrupt or from another chain
    ├── Unavailable              503   -32020   a service this one needs cannot be reached now
    └── RemoteError              502   -32020   another service answered with an error, or could not be reached
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


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
    BAD_STEP_PROOF = "bad_step_proof"
    WRONG_COMMITMENT = "wrong_commitment"
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
    http_status: ClassVar[int] = 400
    rpc_code: ClassVar[int] = -32602

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
    rpc_code = -32001

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
    http_status = 422

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
    http_status = 422


class InputTooLarge(AitbcError):
    reason = "input_too_large"
    http_status = 413


class UnknownModel(AitbcError):
    """No live miner serves the model a job asks for."""

    reason = "unknown_model"
    http_status = 422


class Unauthorized(AitbcError):
    """Missing or wrong credentials: an API key, a bearer token, a request signature."""

    reason = "unauthorized"
    http_status = 401
    rpc_code = -32010


class Forbidden(AitbcError):
    reason = "forbidden"
    http_status = 403
    rpc_code = -32011


class UnknownMiner(Forbidden):
    """A miner that is not registered with the coordinator (a miner re-registers when it sees this)."""

    reason = "unknown_miner"


class RateLimited(AitbcError):
    reason = "rate_limited"
    http_status = 429
    rpc_code = -32013

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds until a request would pass again."""


class PaymentRequired(AitbcError):
    reason = "payment_required"
    http_status = 402


class Conflict(AitbcError):
    reason = "conflict"
    http_status = 409
    rpc_code = -32012


class Unavailable(AitbcError):
    reason = "unavailable"
    http_status = 503
    rpc_code = -32020


class NotFound(AitbcError):
    reason = "not_found"
    http_status = 404
    rpc_code = -32004


class ConfigError(AitbcError):
    reason = "config_error"


class StorageError(AitbcError):
    reason = "storage_error"
    http_status = 500
    rpc_code = -32603


class RemoteError(AitbcError):
    """An error reported by another AITBC service (JSON-RPC error or HTTP problem), or no answer at all."""

    reason = "remote_error"
    http_status = 502
    rpc_code = -32020

    def __init__(
        self, message: str, *, code: int | None = None, reason: str | None = None, data: object = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.code = code
        self.data = data
