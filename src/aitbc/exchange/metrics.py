"""Prometheus metrics of the exchange (its own registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aitbc.market.ledger import Event, OrderAccepted, Trade


class ExchangeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.orders = Counter("exchange_orders_accepted_total", "Orders accepted", registry=r)
        self.trades = Counter("exchange_trades_total", "Trades", registry=r)
        self.rejections = Counter("exchange_rejections_total", "Requests refused, by reason", ["reason"], registry=r)
        self.commit_batch = Histogram(
            "exchange_commit_batch_commands",
            "Commands per database commit",
            registry=r,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
        )
        self.commit_seconds = Histogram("exchange_commit_seconds", "Time of one database commit", registry=r)
        self.invariant_failures = Counter(
            "exchange_invariant_failures_total", "Ledger or book invariant checks that failed", registry=r
        )
        self.open_orders = Gauge("exchange_open_orders", "Orders resting on the book", registry=r)
        self.ws_clients = Gauge("exchange_ws_clients", "WebSocket feed clients", registry=r)
        self.deposits = Counter("exchange_deposits_total", "Deposits credited, by asset", ["asset"], registry=r)
        self.reversals = Counter(
            "exchange_deposit_reversals_total", "Deposits reversed by a reorg", ["asset"], registry=r
        )
        self.chain_height = Gauge(
            "exchange_chain_height", "Tip height the watcher saw, by chain", ["chain"], registry=r
        )

    def count_events(self, events: list[Event]) -> None:
        for e in events:
            t = type(e)
            if t is OrderAccepted:
                self.orders.inc()
            elif t is Trade:
                self.trades.inc()
