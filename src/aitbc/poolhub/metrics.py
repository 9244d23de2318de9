"""Prometheus metrics of the pool hub, on its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class PoolHubMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.miners_registered = Gauge("aitbc_poolhub_miners", "Registered miners", registry=r)
        self.miners_online = Gauge("aitbc_poolhub_miners_online", "Miners with a recent heartbeat", registry=r)
        self.capacity = Gauge(
            "aitbc_poolhub_capacity_slots", "Job slots of online miners per model", ["model", "kind"], registry=r
        )
        self.free_capacity = Gauge(
            "aitbc_poolhub_free_slots", "Free job slots of online miners per model", ["model", "kind"], registry=r
        )
        self.match_latency = Histogram(
            "aitbc_poolhub_match_seconds",
            "Time to rank the miners for one job",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.matches = Counter("aitbc_poolhub_matches", "Match requests, by result", ["result"], registry=r)
        self.outcomes = Counter("aitbc_poolhub_outcomes", "Job outcomes recorded, by type", ["outcome"], registry=r)
        self.heartbeats = Counter("aitbc_poolhub_heartbeats", "Heartbeats accepted", registry=r)
        self.registrations = Counter("aitbc_poolhub_registrations", "Miner registrations and updates", registry=r)
        self.http_rejections = Counter(
            "aitbc_poolhub_http_rejections", "Requests refused, by reason", ["reason"], registry=r
        )
