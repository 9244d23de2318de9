"""Tables (SQLAlchemy Core). Times are integer milliseconds; JSON columns hold protocol structs."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("client", sa.String(90), nullable=False),
    sa.Column("rate_per_second", sa.Float, nullable=False),
    sa.Column("burst", sa.Integer, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

miners = sa.Table(
    "miners",
    metadata,
    sa.Column("address", sa.String(90), primary_key=True),
    sa.Column("registration", sa.JSON, nullable=False),
    sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
    sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("api_key_id", sa.String(32), nullable=False, index=True),
    sa.Column("client", sa.String(90), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("model_digest", sa.String(200), nullable=True),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("input_hash", sa.String(64), nullable=False),
    sa.Column("max_price", sa.BigInteger, nullable=True),
    sa.Column("constraints", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("miner", sa.String(90), nullable=True),
    sa.Column("lease_id", sa.String(32), nullable=True),
    sa.Column("lease_expires_at_ms", sa.BigInteger, nullable=True),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("assigned_at_ms", sa.BigInteger, nullable=True),
    sa.Column("started_at_ms", sa.BigInteger, nullable=True),
    sa.Column("finished_at_ms", sa.BigInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("served_digest", sa.String(200), nullable=True),
    sa.Column("assigned_unit_price", sa.BigInteger, nullable=True),
    sa.Column("result", sa.JSON, nullable=True),
    # Payment on chain (all NULL for a job run unpaid, without a node): the escrow the client opened,
    # then what the coordinator did about it (see aitbc.coordinator.payments).
    sa.Column("escrow_amount", sa.BigInteger, nullable=True),
    sa.Column("escrow_deadline", sa.BigInteger, nullable=True),
    sa.Column("payment_state", sa.String(16), nullable=True),
    sa.Column("payment_tx", sa.String(64), nullable=True),
    sa.Column("payment_height", sa.BigInteger, nullable=True),
    sa.Column("payment_updated_ms", sa.BigInteger, nullable=True),
    sa.Column("payment_error", sa.Text, nullable=True),
    sa.Column("paid_to_miner", sa.BigInteger, nullable=True),
    sa.Column("protocol_fee", sa.BigInteger, nullable=True),
    sa.Column("refunded", sa.BigInteger, nullable=True),
    # a signed-mode deposit job: the client's signature over its job request (aitbc.protocol.deposit)
    sa.Column("client_signature", sa.String(128), nullable=True),
    # orders the jobs one process accepted in the same millisecond (JobRecord.created_seq)
    sa.Column("created_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_jobs_state_model_created", "state", "model", "created_at_ms"),
    sa.Index("ix_jobs_lease", "state", "lease_expires_at_ms"),
    sa.Index("ix_jobs_state_expires", "state", "expires_at_ms"),
    sa.Index("ix_jobs_payment", "payment_state", "state"),
)

chain_cursor = sa.Table(
    "chain_cursor",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("event_seq", sa.BigInteger, nullable=False),
)
"""How far the coordinator has followed the chain's job events (``get_job_events``)."""

receipts = sa.Table(
    "receipts",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("receipt_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("miner", sa.String(90), nullable=False, index=True),
    sa.Column("receipt", sa.JSON, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("zk_proof", sa.JSON, nullable=True),
)

deposit_bindings = sa.Table(
    "deposit_bindings",
    metadata,
    sa.Column("api_key_id", sa.String(32), primary_key=True),
    sa.Column("deposit_id", sa.String(44), nullable=False, index=True),
    sa.Column("bound_at_ms", sa.BigInteger, nullable=False),
)
"""An API key paid from a deposit (``aitbc.coordinator.deposits``); its deposit jobs use the jobs' payment
columns: ``escrow_amount`` = the charge reserved (worst case, then the receipt's), ``escrow_deadline`` = the
job's expiry height, ``payment_state`` reserved → batching → settled (or released / batch_refused)."""
