"""Prometheus metrics of one node, on a registry of its own (no module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.height = Gauge("aitbc_chain_height", "Height of the last committed block", registry=self.registry)
        self.committed_txs = Counter("aitbc_committed_txs", "Txs committed in blocks", registry=self.registry)
        self.committed_tps = Gauge(
            "aitbc_committed_tx_per_second",
            "Txs in the last block divided by the block interval",
            registry=self.registry,
        )
        self.mempool_size = Gauge("aitbc_mempool_size", "Txs waiting in the mempool", registry=self.registry)
        self.block_interval = Histogram(
            "aitbc_block_interval_seconds",
            "Time between consecutive committed blocks",
            buckets=(0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 3, 5, 10),
            registry=self.registry,
        )
        self.block_build_seconds = Histogram(
            "aitbc_block_build_seconds",
            "Time to build, persist and apply a block",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2),
            registry=self.registry,
        )
        self.rejected_txs = Counter(
            "aitbc_rejected_txs", "Txs refused at admission, by reason", ["reason"], registry=self.registry
        )
        self.rpc_requests = Counter(
            "aitbc_rpc_requests", "JSON-RPC calls by method", ["method"], registry=self.registry
        )
        self.ws_subscribers = Gauge("aitbc_ws_subscribers", "Connected WebSocket clients", registry=self.registry)
        self.ws_refused = Counter(
            "aitbc_ws_refused", "WebSocket connections refused past ws_max_connections", registry=self.registry
        )
        self.ws_dropped = Counter(
            "aitbc_ws_dropped_subscribers", "WebSocket clients dropped for not keeping up", registry=self.registry
        )

        # consensus (BFT networks)
        self.consensus_height = Gauge(
            "aitbc_consensus_height", "Height the consensus machine is deciding", registry=self.registry
        )
        self.consensus_round = Gauge("aitbc_consensus_round", "Round of the current height", registry=self.registry)
        self.consensus_step = Gauge(
            "aitbc_consensus_step",
            "Step of the current round: 0 propose, 1 prevote, 2 precommit, 3 commit",
            registry=self.registry,
        )
        self.consensus_is_validator = Gauge(
            "aitbc_consensus_is_validator",
            "1 while this node's key is in the active set of the current height (0: a full node)",
            registry=self.registry,
        )
        self.consensus_rounds = Histogram(
            "aitbc_consensus_rounds_per_height",
            "Rounds a committed height took (1: decided in round 0)",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16),
            registry=self.registry,
        )
        self.consensus_commit_latency = Histogram(
            "aitbc_consensus_commit_latency_seconds",
            "From the start of a height's consensus to its block committed here",
            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
            registry=self.registry,
        )
        self.consensus_evidence = Counter(
            "aitbc_consensus_evidence_reported", "Double votes seen and reported as evidence", registry=self.registry
        )
        # p2p
        self.p2p_peers = Gauge("aitbc_p2p_peers", "Authenticated peers connected", registry=self.registry)
        self.p2p_in = Counter(
            "aitbc_p2p_messages_in", "Messages received from peers, by type", ["type"], registry=self.registry
        )
        self.p2p_out = Counter(
            "aitbc_p2p_messages_out",
            "Messages queued to peers (one per peer), by type",
            ["type"],
            registry=self.registry,
        )
        self.p2p_dropped = Counter(
            "aitbc_p2p_messages_dropped",
            "Messages dropped, by type and reason (send_queue_full, inbox_full, duplicate, blocked, rate_limited, ...)",
            ["type", "reason"],
            registry=self.registry,
        )
        self.p2p_penalties = Counter(
            "aitbc_p2p_peer_penalties", "Times a peer was scored down for invalid data", registry=self.registry
        )
        self.p2p_bans = Counter(
            "aitbc_p2p_peer_bans", "Node keys or IPs banned (score exhausted)", registry=self.registry
        )
        self.p2p_refused = Counter(
            "aitbc_p2p_inbound_refused",
            "Inbound connections refused before the handshake (caps, banned IP, blocked)",
            registry=self.registry,
        )
        self.p2p_handshakes_refused = Counter(
            "aitbc_p2p_handshakes_refused",
            "Handshakes refused: another chain, no proof of the node key, a banned or cut-off peer",
            registry=self.registry,
        )
        self.p2p_broken = Counter(
            "aitbc_p2p_frames_refused",
            "Connections ended by a sealed frame that did not open (altered, dropped or replayed in transit)",
            registry=self.registry,
        )
        self.p2p_future_bytes = Gauge(
            "aitbc_p2p_future_bytes",
            "Bytes of verified future-height consensus messages buffered",
            registry=self.registry,
        )

    def on_block(self, height: int, tx_count: int, interval: float | None, mempool_size: int) -> None:
        self.height.set(height)
        self.committed_txs.inc(tx_count)
        self.mempool_size.set(mempool_size)
        if interval is not None and interval > 0:
            self.block_interval.observe(interval)
            self.committed_tps.set(tx_count / interval)
