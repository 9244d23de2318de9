"""Writes the Grafana dashboards in deploy/grafana/dashboards/ (provisioned by the compose deployment).

The JSON is generated so that every panel has the same shape and every query names a metric the services
really export: tests/unit/deploy/test_dashboards.py regenerates them, compares with the committed files
and checks each metric against the services' Prometheus registries. Run it after changing a panel:
    .venv/bin/python deploy/grafana/build_dashboards.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "aitbc-prometheus"}
HERE = Path(__file__).resolve().parent

Panel = tuple[str, str, list[str]]  # title, unit, PromQL expressions

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "chain": (
        "AITBC chain",
        [
            ("Height", "none", ["max by (instance) (aitbc_chain_height)"]),
            ("Committed tx/s", "ops", ["sum(rate(aitbc_committed_txs_total[1m]))", "max(aitbc_committed_tx_per_second)"]),
            ("Mempool", "none", ["aitbc_mempool_size"]),
            (
                "Block interval p50 / p99",
                "s",
                [
                    "histogram_quantile(0.5, sum by (le) (rate(aitbc_block_interval_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (le) (rate(aitbc_block_interval_seconds_bucket[5m])))",
                ],
            ),
            ("Rejected txs /s by reason", "ops", ["sum by (reason) (rate(aitbc_rejected_txs_total[5m]))"]),
            ("RPC requests /s", "reqps", ["sum by (method) (rate(aitbc_rpc_requests_total[1m]))"]),
            ("WebSocket subscribers", "none", ["sum(aitbc_ws_subscribers)"]),
        ],
    ),
    "consensus": (
        "AITBC consensus",
        [
            ("Consensus height", "none", ["aitbc_consensus_height"]),
            ("Round", "none", ["aitbc_consensus_round"]),
            (
                "Commit latency p50 / p99",
                "s",
                [
                    "histogram_quantile(0.5, sum by (le) (rate(aitbc_consensus_commit_latency_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (le) (rate(aitbc_consensus_commit_latency_seconds_bucket[5m])))",
                ],
            ),
            ("Validators in the active set", "none", ["sum(aitbc_consensus_is_validator)"]),
            ("Peers", "none", ["aitbc_p2p_peers"]),
            ("P2p messages in /s", "ops", ["sum by (instance) (rate(aitbc_p2p_messages_in_total[1m]))"]),
            ("P2p penalties and bans", "none", ["sum(aitbc_p2p_peer_penalties_total)", "sum(aitbc_p2p_peer_bans_total)"]),
            ("Evidence reported", "none", ["sum(aitbc_consensus_evidence_reported_total)"]),
        ],
    ),
    "coordinator": (
        "AITBC coordinator",
        [
            ("Jobs submitted /s", "ops", ["rate(aitbc_jobs_submitted_total[1m])"]),
            ("Jobs by state", "none", ["sum by (state) (aitbc_jobs)"]),
            ("Queue depth", "none", ["aitbc_job_queue_depth"]),
            (
                "Submit → claim p50 / p99",
                "s",
                [
                    "histogram_quantile(0.5, sum by (le) (rate(aitbc_job_assignment_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (le) (rate(aitbc_job_assignment_seconds_bucket[5m])))",
                ],
            ),
            ("Finished /s by state", "ops", ["sum by (state) (rate(aitbc_jobs_finished_total[1m]))"]),
            ("Payment txs /s", "ops", ["sum(rate(aitbc_payment_txs_sent_total[1m]))"]),
            ("Refused requests /s by reason", "reqps", ["sum by (reason) (rate(aitbc_http_rejections_total[1m]))"]),
        ],
    ),
    "miners": (
        "AITBC miners",
        [
            ("Miners online (coordinator)", "none", ["aitbc_miners_online"]),
            ("Miners online (pool hub)", "none", ["aitbc_poolhub_miners_online"]),
            (
                "Tokens/s per job p50",
                "none",
                ["histogram_quantile(0.5, sum by (le) (rate(aitbc_job_tokens_per_second_bucket[5m])))"],
            ),
            (
                "Job duration p50 / p99",
                "s",
                [
                    "histogram_quantile(0.5, sum by (le) (rate(aitbc_job_duration_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (le) (rate(aitbc_job_duration_seconds_bucket[5m])))",
                ],
            ),
            ("Slots per model", "none", ["sum by (model) (aitbc_poolhub_capacity_slots)"]),
            ("Free slots per model", "none", ["sum by (model) (aitbc_poolhub_free_slots)"]),
            ("Requeued jobs /s", "ops", ["rate(aitbc_jobs_requeued_total[5m])"]),
        ],
    ),
    "poolhub": (
        "AITBC pool hub",
        [
            ("Registered / online miners", "none", ["aitbc_poolhub_miners", "aitbc_poolhub_miners_online"]),
            ("Heartbeats /s", "ops", ["rate(aitbc_poolhub_heartbeats_total[1m])"]),
            ("Matches /s by result", "ops", ["sum by (result) (rate(aitbc_poolhub_matches_total[1m]))"]),
            (
                "Match latency p50 / p99",
                "s",
                [
                    "histogram_quantile(0.5, sum by (le) (rate(aitbc_poolhub_match_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (le) (rate(aitbc_poolhub_match_seconds_bucket[5m])))",
                ],
            ),
            ("Outcomes /s by type", "ops", ["sum by (outcome) (rate(aitbc_poolhub_outcomes_total[1m]))"]),
        ],
    ),
    "exchange": (
        "AITBC exchange",
        [
            ("Orders accepted /s", "ops", ["sum(rate(exchange_orders_accepted_total[1m]))"]),
            ("Trades /s", "ops", ["sum(rate(exchange_trades_total[1m]))"]),
            ("Open orders on the book", "none", ["max(exchange_open_orders)"]),
            ("Refused requests /s by reason", "ops", ["sum by (reason) (rate(exchange_rejections_total[5m]))"]),
            (
                "Database commit p50 / p99",
                "s",
                [
                    "histogram_quantile(0.5, sum by (le) (rate(exchange_commit_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (le) (rate(exchange_commit_seconds_bucket[5m])))",
                ],
            ),
            (
                "Commands per commit p50",
                "none",
                ["histogram_quantile(0.5, sum by (le) (rate(exchange_commit_batch_commands_bucket[5m])))"],
            ),
            ("Deposits credited by asset", "none", ["sum by (asset) (exchange_deposits_total)"]),
            ("Deposit reversals (reorgs) by asset", "none", ["sum by (asset) (exchange_deposit_reversals_total)"]),
            ("Watched chain height", "none", ["max by (chain) (exchange_chain_height)"]),
            ("WebSocket feed clients", "none", ["max(exchange_ws_clients)"]),
            ("Invariant check failures", "none", ["sum(exchange_invariant_failures_total)"]),
        ],
    ),
}


def panel(index: int, title: str, unit: str, exprs: list[str]) -> dict[str, Any]:
    """A time-series panel on a 2-column grid (12 of 24 units wide, 8 high)."""
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr} for i, expr in enumerate(exprs)
        ],
    }


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    return {
        "uid": f"aitbc-{uid}",
        "title": title,
        "tags": ["aitbc"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": [panel(i, *p) for i, p in enumerate(panels)],
    }


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {
        f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2, ensure_ascii=False) + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


def main() -> None:
    out = HERE / "dashboards"
    out.mkdir(exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
