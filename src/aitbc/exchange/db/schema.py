"""Tables (SQLAlchemy Core). Names start with ``exchange_`` so the exchange may share a database.

``exchange_commands`` is the event log (every accepted command, in order: replaying it rebuilds the
book and the ledger); ``exchange_journal`` holds the double-entry postings of each command, written in
the same transaction; orders and trades are query views of the same events.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

users = sa.Table(
    "exchange_users",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("totp_secret", sa.String(64), nullable=True),
    sa.Column("totp_enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("totp_last_step", sa.BigInteger, nullable=False, default=0),
    sa.Column("is_operator", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

sessions = sa.Table(
    "exchange_sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

api_keys = sa.Table(
    "exchange_api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("scopes", sa.String(64), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

audit = sa.Table(
    "exchange_audit",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=True),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_exchange_audit_user_time", "user_id", "at_ms"),
)

commands = sa.Table(
    "exchange_commands",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
)

journal = sa.Table(
    "exchange_journal",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False, index=True),
    sa.Column("account", sa.String(90), nullable=False),
    sa.Column("asset", sa.String(8), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
)

orders = sa.Table(
    "exchange_orders",
    metadata,
    sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("client_order_id", sa.String(64), nullable=True),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("order_type", sa.String(8), nullable=False),
    sa.Column("time_in_force", sa.String(4), nullable=False),
    sa.Column("price", sa.BigInteger, nullable=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("filled", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("reason", sa.String(20), nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_exchange_orders_user", "user_id", "order_id"),
)

trades = sa.Table(
    "exchange_trades",
    metadata,
    sa.Column("trade_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("taker_side", sa.String(4), nullable=False),
    sa.Column("maker_order_id", sa.BigInteger, nullable=False),
    sa.Column("taker_order_id", sa.BigInteger, nullable=False),
    sa.Column("buyer", sa.BigInteger, nullable=False),
    sa.Column("seller", sa.BigInteger, nullable=False),
    sa.Column("buyer_fee", sa.BigInteger, nullable=False),
    sa.Column("seller_fee", sa.BigInteger, nullable=False),
    sa.Index("ix_exchange_trades_buyer", "buyer", "trade_id"),
    sa.Index("ix_exchange_trades_seller", "seller", "trade_id"),
)

deposit_addresses = sa.Table(
    "exchange_deposit_addresses",
    metadata,
    sa.Column("address", sa.String(100), primary_key=True),
    sa.Column("asset", sa.String(8), nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("derivation_index", sa.BigInteger, nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

deposits = sa.Table(
    "exchange_deposits",
    metadata,
    sa.Column("ref", sa.String(100), primary_key=True),
    sa.Column("asset", sa.String(8), nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("address", sa.String(100), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("txid", sa.String(64), nullable=False),
    sa.Column("block_hash", sa.String(64), nullable=True),
    sa.Column("height", sa.BigInteger, nullable=True),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("seen_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

withdrawals = sa.Table(
    "exchange_withdrawals",
    metadata,
    sa.Column("ref", sa.String(40), primary_key=True),
    sa.Column("asset", sa.String(8), nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("address", sa.String(100), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("psbt", sa.Text, nullable=True),
    sa.Column("txid", sa.String(64), nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

settings_kv = sa.Table(
    "exchange_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
)

btc_utxos = sa.Table(
    "exchange_btc_utxos",
    metadata,
    sa.Column("txid", sa.String(64), primary_key=True),
    sa.Column("vout", sa.Integer, primary_key=True),
    sa.Column("address", sa.String(100), nullable=False),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("height", sa.BigInteger, nullable=False),
    sa.Column("block_hash", sa.String(64), nullable=False),
    sa.Column("spent_by", sa.String(64), nullable=True),
    sa.Column("spent_height", sa.BigInteger, nullable=True),
    sa.Column("reserved_by", sa.String(40), nullable=True),
    sa.Index("ix_exchange_btc_utxos_spent_by", "spent_by"),
)
