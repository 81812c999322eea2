"""The sink's one settings object. Built at the edge (CLI / __main__), passed everywhere."""

from __future__ import annotations

from dataclasses import dataclass

from fleetrun.settings import SettingsError, default_instance_id, setting

PARTITION_INTERVALS = ("daily", "weekly", "monthly")


@dataclass(frozen=True, slots=True)
class SinkSettings:
    """Everything the sink can be told; env FLEETRUN_<NAME> or TOML `[sink]`."""

    # -- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap: str = setting("127.0.0.1:9092", "Kafka bootstrap servers, comma-separated.")
    topic_prefix: str = setting("fleetrun.", "Prefix of the fleetrun topics (results, status...).")
    group_id: str = setting("fleetrun-sink", "Kafka consumer group of the sinks.")
    sink_id: str = setting("", "Name of this sink in dead letters and logs (default hostname-pid).")
    session_timeout_ms: int = setting(10_000, "Kafka consumer session timeout.")
    max_poll_interval_ms: int = setting(
        300_000, "Kafka max.poll.interval.ms; the loop keeps polling while partitions are paused."
    )
    fetch_max_bytes: int = setting(
        16 * 1024 * 1024, "Most bytes one fetch from the broker returns (all partitions)."
    )
    max_partition_fetch_bytes: int = setting(
        1024 * 1024, "Most bytes one fetch returns per partition (a larger record still comes)."
    )
    max_poll_records: int = setting(
        500,
        "Most records one poll hands to the loop (decoding them is one ~5 ms slice of CPU).",
    )
    kafka_check_crcs: bool = setting(
        True,
        "Verify each record batch's CRC32C (catches on-disk corruption); off saves ~1 µs/record.",
    )
    kafka_timeout_s: float = setting(
        30.0, "Deadline for a Kafka operation: start, offset commit, dead-letter publish."
    )
    dlq_max_request_bytes: int = setting(
        16 * 1024 * 1024,
        "Largest dead-letter record published (keep within the broker's message.max.bytes).",
    )

    # -- batching --------------------------------------------------------------------------
    batch_max_rows: int = setting(5_000, "Flush a partition's batch at this many records.")
    batch_max_bytes: int = setting(
        4 * 1024 * 1024, "Flush a partition's batch at this many record bytes."
    )
    linger_ms: float = setting(
        250.0, "Flush a partition's batch when its oldest record has waited this long."
    )
    max_buffer_bytes: int = setting(
        32 * 1024 * 1024,
        "Record bytes buffered across partitions; past it the largest batches flush at once "
        "and fetching pauses.",
    )
    max_inflight_flushes: int = setting(
        3, "Flushes (one transaction each, one partition each) running at once."
    )

    # -- PostgreSQL ------------------------------------------------------------------------
    pg_dsn: str = setting(
        "postgresql://fleetrun@127.0.0.1:5432/fleetrun", "PostgreSQL DSN.", secret=True
    )
    pg_pool_min_size: int = setting(
        0, "Connections the pool keeps open even when idle (0: opened on demand, kept 5 min)."
    )
    pg_pool_max_size: int = setting(
        4, "Most connections the pool opens (one per flush, one for partition maintenance)."
    )
    pg_connect_timeout_s: float = setting(10.0, "Deadline for opening one connection.")
    pg_statement_timeout_s: float = setting(
        60.0, "Deadline for one statement (COPY, INSERT, DDL); past it the flush is retried."
    )
    retry_backoff_s: float = setting(
        0.2, "First delay before retrying a flush after a database error; doubles, with jitter."
    )
    retry_backoff_max_s: float = setting(10.0, "Longest delay between flush retries.")
    migrate_on_start: bool = setting(
        True, "Apply pending schema migrations at start (serialised by an advisory lock)."
    )

    # -- partitions and retention ------------------------------------------------------------
    partition_interval: str = setting(
        "daily", "Time span of one results partition: daily, weekly or monthly."
    )
    partition_ahead_days: int = setting(
        7, "Partitions are created this many days ahead; results later than that are refused."
    )
    retention_days: int = setting(
        30, "Results partitions wholly older than this are dropped; 0 keeps everything."
    )
    dead_letter_retention_days: int = setting(
        90, "dead_letters rows older than this are deleted; 0 keeps everything."
    )
    maintenance_interval_s: float = setting(
        3600.0, "How often the running sink creates partitions ahead and applies retention."
    )

    # -- lifecycle and operations ------------------------------------------------------------
    shutdown_timeout_s: float = setting(
        30.0, "On SIGTERM: deadline to flush what is buffered, commit, and close the pool."
    )
    rebalance_timeout_s: float = setting(
        10.0, "On a rebalance: how long in-flight flushes of revoked partitions may finish."
    )
    ops_host: str = setting("127.0.0.1", "Address of the /metrics and /healthz endpoint.")
    ops_port: int = setting(9465, "Port of the /metrics and /healthz endpoint; 0 = any free port.")
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = setting("text", "text (key=value) or json.")

    def __post_init__(self) -> None:
        problems = []
        positive = (
            "batch_max_rows",
            "batch_max_bytes",
            "max_buffer_bytes",
            "max_inflight_flushes",
            "pg_pool_max_size",
            "max_poll_records",
        )
        problems += [f"FLEETRUN_{n.upper()} must be at least 1" for n in positive if _lt1(self, n)]
        if self.partition_interval not in PARTITION_INTERVALS:
            problems.append(
                f"FLEETRUN_PARTITION_INTERVAL={self.partition_interval!r}: "
                f"expected one of {', '.join(PARTITION_INTERVALS)}"
            )
        if self.retention_days < 0 or self.partition_ahead_days < 0:
            problems.append("FLEETRUN_RETENTION_DAYS and FLEETRUN_PARTITION_AHEAD_DAYS must be ≥ 0")
        if self.pg_pool_max_size < self.max_inflight_flushes:
            problems.append(
                "FLEETRUN_PG_POOL_MAX_SIZE must be at least FLEETRUN_MAX_INFLIGHT_FLUSHES "
                "(each flush holds one connection)"
            )
        if problems:
            raise SettingsError("; ".join(problems))

    @property
    def name(self) -> str:
        """The sink's id, defaulting to hostname-pid."""
        return self.sink_id or default_instance_id()

    @property
    def results_topic(self) -> str:
        return self.topic_prefix + "results"

    @property
    def status_topic(self) -> str:
        return self.topic_prefix + "status"

    @property
    def dlq_topic(self) -> str:
        return self.topic_prefix + "dlq"


def _lt1(obj: SinkSettings, name: str) -> bool:
    value: int = getattr(obj, name)
    return value < 1
