"""Prometheus metrics of the wallet daemon, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WalletMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.unlocked = Gauge("aitbc_wallet_unlocked_keys", "Keys unlocked in memory now", registry=r)
        self.unlocks = Counter("aitbc_wallet_unlocks", "Unlock attempts by outcome", ["outcome"], registry=r)
        self.signatures = Counter("aitbc_wallet_signatures", "Signatures made with unlocked keys", registry=r)
        self.sends = Counter("aitbc_wallet_sends", "Transfers submitted to the node", registry=r)
        self.wallets_created = Counter("aitbc_wallet_created", "Wallets created or imported", registry=r)
        self.rejected = Counter("aitbc_wallet_rejected_requests", "Requests refused, by reason", ["reason"], registry=r)
        self.rpc_requests = Counter("aitbc_wallet_rpc_requests", "JSON-RPC calls by method", ["method"], registry=r)
