"""The exchange database: the command log with its journal and views (one transaction per batch), users,
sessions, API keys, audit, deposits and withdrawals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aitbc.exchange.db import schema
from aitbc.market.ledger import Event, OrderAccepted, OrderClosed, OrderRested, Trade, compute_postings
from aitbc.market.orderbook import OrderType, SelfTradePrevention, Side, TimeInForce
from aitbc.market.trading import (
    CancelOrder,
    CancelWithdrawal,
    Command,
    CompleteWithdrawal,
    Deposit,
    PlaceOrder,
    RequestWithdrawal,
    ReverseDeposit,
)
from aitbc.protocol.errors import StorageError
from aitbc.runtime.db import create_db_engine, run_migrations

MIGRATIONS_DIR = Path(__file__).parent / "db" / "migrations"

_COMMANDS: dict[str, type[Any]] = {
    c.__name__: c
    for c in (PlaceOrder, CancelOrder, Deposit, ReverseDeposit, RequestWithdrawal, CompleteWithdrawal, CancelWithdrawal)
}


def encode_command(command: Command) -> tuple[str, dict[str, Any]]:
    return type(command).__name__, {k: (str(v) if isinstance(v, str) else v) for k, v in command._asdict().items()}


def decode_command(kind: str, body: dict[str, Any]) -> Command:
    cls = _COMMANDS.get(kind)
    if cls is None:
        raise StorageError(f"unknown command kind {kind!r} in the log")
    if cls is PlaceOrder:
        body = dict(body)
        body["side"] = Side(body["side"])
        body["order_type"] = OrderType(body["order_type"])
        body["time_in_force"] = TimeInForce(body["time_in_force"])
        body["stp"] = SelfTradePrevention(body["stp"])
    command: Command = cls(**body)
    return command


_INSERT_COMMANDS = schema.commands.insert()
_ORDER_COLUMNS = tuple(c.name for c in schema.orders.columns)
_TRADE_COLUMNS = tuple(c.name for c in schema.trades.columns)


def _driver_sql(paramstyle: str) -> dict[str, str]:
    """Statements for the driver's own executemany, in its parameter style (SQLite ``?``, psycopg ``%s``)."""
    p = "?" if paramstyle == "qmark" else "%s"

    def insert(table: str, columns: tuple[str, ...]) -> str:
        # table and column names are this module's constants, values are bound parameters
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))})"  # noqa: S608

    return {
        "journal": insert("exchange_journal", ("seq", "account", "asset", "amount")),
        "orders": insert("exchange_orders", _ORDER_COLUMNS),
        "trades": insert("exchange_trades", _TRADE_COLUMNS),
        "update": (
            f"UPDATE exchange_orders SET filled = filled + {p}, status = COALESCE({p}, status), "  # noqa: S608
            f"reason = COALESCE({p}, reason), updated_at_ms = {p} WHERE order_id = {p}"
        ),
    }


@dataclass(slots=True)
class Entry:
    """One accepted command, its events, and the other rows that must commit with it."""

    seq: int
    at_ms: int
    command: Command
    events: list[Event]
    client_order_id: str | None = None
    extra: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    """(SQLAlchemy statement, parameters) written in the same transaction."""


class ExchangeStore:
    def __init__(self, url: str, base: str, quote: str) -> None:
        self.url = url
        self.base, self.quote = base, quote
        try:
            self.engine = create_db_engine(url)
            run_migrations(self.engine, MIGRATIONS_DIR)
            self._sql = _driver_sql(self.engine.dialect.paramstyle)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot open the exchange database {url}: {exc}") from None

    def close(self) -> None:
        self.engine.dispose()

    # -- the log ----------------------------------------------------------------------
    def load_commands(self) -> Iterator[tuple[int, int, Command]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.commands).order_by(schema.commands.c.seq))
            for row in rows:
                yield row.seq, row.at_ms, decode_command(row.kind, row.body)

    def write_batch(self, entries: list[Entry]) -> None:
        """Commands, postings, order and trade views and extra rows of ``entries``: all or nothing."""
        cmd_rows, postings, trades, new_orders = [], [], [], []
        order_updates: dict[int, dict[str, Any]] = {}
        extra: list[tuple[Any, dict[str, Any]]] = []
        for entry in entries:
            kind, body = encode_command(entry.command)
            cmd_rows.append({"seq": entry.seq, "at_ms": entry.at_ms, "kind": kind, "body": body})
            for event in entry.events:
                for p in compute_postings(event, self.base, self.quote):
                    if p.amount:
                        postings.append((entry.seq, p.account, p.asset, p.amount))
                t = type(event)
                if t is OrderAccepted:
                    assert isinstance(event, OrderAccepted)
                    new_orders.append(
                        {
                            "order_id": event.order_id,
                            "user_id": int(event.user),
                            "client_order_id": entry.client_order_id,
                            "side": str(event.side),
                            "order_type": str(event.order_type),
                            "time_in_force": str(event.time_in_force),
                            "price": event.price,
                            "quantity": event.quantity,
                            "filled": 0,
                            "status": "new",
                            "reason": None,
                            "created_at_ms": entry.at_ms,
                            "updated_at_ms": entry.at_ms,
                        }
                    )
                    order_updates[event.order_id] = new_orders[-1]
                elif t is Trade:
                    assert isinstance(event, Trade)
                    trades.append(
                        (
                            event.trade_id,
                            entry.seq,
                            entry.at_ms,
                            event.price,
                            event.quantity,
                            event.value,
                            str(event.taker_side),
                            event.maker_order_id,
                            event.taker_order_id,
                            int(event.buyer),
                            int(event.seller),
                            event.buyer_fee,
                            event.seller_fee,
                        )
                    )
                    for oid in (event.maker_order_id, event.taker_order_id):
                        upd = order_updates.setdefault(oid, {"order_id": oid, "filled_delta": 0})
                        if "filled_delta" in upd:
                            upd["filled_delta"] += event.quantity
                        else:
                            upd["filled"] += event.quantity
                        upd["updated_at_ms"] = entry.at_ms
                elif t is OrderRested:
                    assert isinstance(event, OrderRested)
                    upd = order_updates.setdefault(event.order_id, {"order_id": event.order_id, "filled_delta": 0})
                    upd["status"] = "open"
                    upd["updated_at_ms"] = entry.at_ms
                elif t is OrderClosed:
                    assert isinstance(event, OrderClosed)
                    upd = order_updates.setdefault(event.order_id, {"order_id": event.order_id, "filled_delta": 0})
                    upd["status"] = "filled" if event.reason == "filled" else "cancelled"
                    upd["reason"] = str(event.reason)
                    upd["updated_at_ms"] = entry.at_ms
            extra.extend(entry.extra)
        updates = [
            (upd["filled_delta"], upd.get("status"), upd.get("reason"), upd["updated_at_ms"], upd["order_id"])
            for upd in order_updates.values()
            if "filled_delta" in upd  # the others are inserted below with their final state
        ]
        order_rows = [tuple(row[c] for c in _ORDER_COLUMNS) for row in new_orders]
        sql = self._sql
        try:
            with self.engine.begin() as conn:
                # plain executemany on the driver for the bulky rows (SQLAlchemy's per-row work is the cost)
                conn.execute(_INSERT_COMMANDS, cmd_rows)
                if postings:
                    conn.exec_driver_sql(sql["journal"], postings)
                if order_rows:
                    conn.exec_driver_sql(sql["orders"], order_rows)
                if trades:
                    conn.exec_driver_sql(sql["trades"], trades)
                if updates:
                    conn.exec_driver_sql(sql["update"], updates)
                for statement, params in extra:
                    conn.execute(statement, params)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot write to the exchange database: {exc}") from exc

    def journal_balances(self, up_to_seq: int | None = None) -> dict[tuple[str, str], int]:
        """Σ postings per (account, asset) of the commands up to ``up_to_seq``, from the database alone."""
        j = schema.journal.c
        query = sa.select(j.account, j.asset, sa.func.sum(j.amount)).group_by(j.account, j.asset)
        if up_to_seq is not None:
            query = query.where(j.seq <= up_to_seq)
        with self.engine.connect() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(query)}

    # -- plain reads and writes ------------------------------------------------------
    def execute(self, statement: Any, params: dict[str, Any] | list[dict[str, Any]] | None = None) -> Any:
        try:
            with self.engine.begin() as conn:
                return conn.execute(statement, params) if params is not None else conn.execute(statement)
        except sa.exc.IntegrityError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"exchange database error: {exc}") from exc

    def fetch_all(self, statement: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(statement))

    def fetch_one(self, statement: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(statement).first()

    def get_state(self, key: str) -> Any:
        row = self.fetch_one(sa.select(schema.settings_kv.c.value).where(schema.settings_kv.c.key == key))
        return None if row is None else row[0]

    def set_state(self, key: str, value: Any) -> None:
        kv = schema.settings_kv
        with self.engine.begin() as conn:
            if conn.execute(sa.select(kv.c.key).where(kv.c.key == key)).first() is None:
                conn.execute(kv.insert().values(key=key, value=value))
            else:
                conn.execute(kv.update().where(kv.c.key == key).values(value=value))
