"""The sink's Prometheus metrics, in one registry per sink instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# A flush is a few ms on an idle database and seconds when it is busy or recovering.
_FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)


class SinkMetrics:
    """Every metric the sink exports; one instance per sink (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rows_written = Counter(
            "fleetrun_sink_rows_written",
            "Rows written, by table; results skipped as already stored are not counted.",
            ["table"],
            registry=r,
        )
        self.duplicates = Counter(
            "fleetrun_sink_duplicate_results",
            "Results already stored (redelivered after a crash or a rewind) and skipped.",
            registry=r,
        )
        self.flushes = Counter(
            "fleetrun_sink_flushes",
            "Flushes stored, by how their results went in: direct (COPY into results), staged "
            "(COPY into staging + INSERT ON CONFLICT, after redelivered results), split "
            "(isolating refused records) or none (statuses only).",
            ["path"],
            registry=r,
        )
        self.records = Counter(
            "fleetrun_sink_records_consumed", "Kafka records taken in, by topic.", ["topic"],
            registry=r,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "fleetrun_sink_batch_rows", "Records per flush.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.flush_seconds = Histogram(
            "fleetrun_sink_flush_seconds",
            "Time to store one batch (one transaction), retries included.",
            buckets=_FLUSH_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "fleetrun_sink_consumer_lag",
            "Records not yet committed, per partition (high watermark - committed offset).",
            ["topic", "partition"],
            registry=r,
        )
        self.retries = Counter(
            "fleetrun_sink_retries",
            "Operations retried after a transient failure, by what was retried.",
            ["operation"],
            registry=r,
        )
        self.dead_letters = Counter(
            "fleetrun_sink_dead_letters",
            "Records dead-lettered, by stage: decode (not a valid record) or database (refused).",
            ["reason"],
            registry=r,
        )
        self.commits = Counter(
            "fleetrun_sink_offset_commits", "Offset commits, by outcome.", ["outcome"], registry=r
        )
        self.buffered_bytes = Gauge(
            "fleetrun_sink_buffered_bytes", "Record bytes in memory (pending + being written).",
            registry=r,
        )  # fmt: skip
        self.inflight_flushes = Gauge(
            "fleetrun_sink_inflight_flushes", "Flushes running now.", registry=r
        )
        self.paused_partitions = Gauge(
            "fleetrun_sink_paused_partitions",
            "Partitions not fetched now (buffer full or database down).",
            registry=r,
        )
        self.database_up = Gauge(
            "fleetrun_sink_database_up", "1 when the last database operation succeeded.",
            registry=r,
        )  # fmt: skip
        self.partitions = Counter(
            "fleetrun_sink_partition_changes", "Results partitions created or dropped.",
            ["change"], registry=r,
        )  # fmt: skip
