"""The collector's Prometheus metrics, in one registry per collector instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Connect and command latencies on a fleet span milliseconds (pooled, loopback) to minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class CollectorMetrics:
    """Every metric the collector exports; one instance per collector (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "fleetrun_collector_requests",
            "Requests handled, by outcome (completed, rejected, dead_lettered).",
            ["outcome"],
            registry=r,
        )
        self.refusals = Counter(
            "fleetrun_collector_refusals",
            "Requests refused at admission, by why (unsigned, signature, stale, policy).",
            ["why"],
            registry=r,
        )
        self.results = Counter(
            "fleetrun_collector_results", "Results published, by status.", ["status"], registry=r
        )
        self.inflight_requests = Gauge(
            "fleetrun_collector_inflight_requests", "Requests executing now.", registry=r
        )
        self.inflight_sessions = Gauge(
            "fleetrun_collector_inflight_sessions",
            "SSH sessions (commands) running now.",
            registry=r,
        )
        self.open_connections = Gauge(
            "fleetrun_collector_open_connections", "Pooled SSH connections open now.", registry=r
        )
        self.connections = Counter(
            "fleetrun_collector_connections",
            "SSH connections used for a command: new (opened for it) or reused (from the pool).",
            ["kind"],
            registry=r,
        )
        self.connection_replaced = Counter(
            "fleetrun_collector_connections_replaced",
            "Pooled connections found dead and replaced transparently.",
            registry=r,
        )
        self.connect_seconds = Histogram(
            "fleetrun_collector_connect_seconds",
            "Time to open and authenticate a new SSH connection.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.command_seconds = Histogram(
            "fleetrun_collector_command_seconds",
            "Time from session open to the command's exit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "fleetrun_collector_consumer_lag",
            "Requests waiting in the topic, per partition (high watermark - position).",
            ["partition"],
            registry=r,
        )
        self.paused_partitions = Gauge(
            "fleetrun_collector_paused_partitions",
            "Partitions paused because in-flight requests reached their cap.",
            registry=r,
        )
        self.ledger_transactions = Histogram(
            "fleetrun_collector_ledger_transaction_writes",
            "Committed ledger transactions (one per partition at a time), by how many writes "
            "(host starts, results with their done marks, statuses) each carried.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.ledger_start_wait = Histogram(
            "fleetrun_collector_ledger_start_wait_seconds",
            "How long a host, ready to start, waited for its `started` mark to commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "fleetrun_collector_dead_letters", "Records sent to the dead-letter topic.", registry=r
        )
        self.shards = Counter(
            "fleetrun_collector_shards",
            "Shards of big requests: split (written by this coordinator), and run here by "
            "outcome (completed, duplicate, dead_lettered).",
            ["outcome"],
            registry=r,
        )
        self.sharded_waiting = Gauge(
            "fleetrun_collector_sharded_requests_waiting",
            "Sharded requests this collector coordinates, waiting for their shards' results.",
            registry=r,
        )
