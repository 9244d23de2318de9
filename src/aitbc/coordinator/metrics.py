"""Prometheus metrics of the coordinator, on its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CoordinatorMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.jobs_by_state = Gauge("aitbc_jobs", "Jobs by state", ["state"], registry=r)
        self.queue_depth = Gauge("aitbc_job_queue_depth", "Jobs waiting for a miner", registry=r)
        self.jobs_submitted = Counter("aitbc_jobs_submitted", "Jobs accepted", registry=r)
        self.jobs_finished = Counter("aitbc_jobs_finished", "Jobs that reached a final state", ["state"], registry=r)
        self.jobs_requeued = Counter("aitbc_jobs_requeued", "Jobs handed back to the queue", registry=r)
        self.assignment_latency = Histogram(
            "aitbc_job_assignment_seconds",
            "Submission to claim by a miner",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.job_duration = Histogram(
            "aitbc_job_duration_seconds",
            "Claim to completed result",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "aitbc_job_tokens_per_second",
            "Generated tokens per second of compute, per job",
            buckets=(1, 5, 10, 25, 50, 100, 200, 500, 1000, 5000),
            registry=r,
        )
        self.tokens_served = Counter(
            "aitbc_tokens_served", "Completion tokens of completed jobs (the web app's tokens/s)", registry=r
        )
        self.miners_online = Gauge("aitbc_miners_online", "Miners heard from recently", registry=r)
        self.claims_waiting = Gauge(
            "aitbc_claims_waiting", "Miners' claims long-polling for work right now (read at scrape time)", registry=r
        )
        self.payments_sent = Counter(
            "aitbc_payment_txs_sent", "Settle / refund txs sent to the node", ["action"], registry=r
        )
        self.payments_refused = Counter(
            "aitbc_payment_txs_refused", "Settle / refund txs the node refused, by reason", ["reason"], registry=r
        )
        self.payments_closed = Counter(
            "aitbc_escrows_closed", "Escrows of this coordinator's jobs closed on chain", ["kind"], registry=r
        )
        self.claims = Counter(
            "aitbc_claims",
            "Miners' claim requests answered, by outcome (jobs: at least one job handed out; empty)",
            ["outcome"],
            registry=r,
        )
        self.result_requests = Counter(
            "aitbc_result_requests", "Miners' result requests (one result or a batch of them)", registry=r
        )
        self.http_rejections = Counter("aitbc_http_rejections", "Requests refused, by reason", ["reason"], registry=r)
