"""The sink's one settings object. Built at the edge (CLI / __main__), passed everywhere."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from fleetrun.runtime.kafkaauth import KafkaClientSettings
from fleetrun.runtime.settings import Maybe, default_instance_id

PartitionInterval = Literal["daily", "weekly", "monthly"]


class SinkSettings(KafkaClientSettings):
    """Everything the sink (and `fleetrun migrate`) can be told; env FLEETRUN_SINK_<NAME> or
    TOML `[sink]`."""

    model_config = SettingsConfigDict(env_prefix="FLEETRUN_SINK_")

    # -- Kafka -----------------------------------------------------------------------------
    topic_prefix: str = Field(
        default="fleetrun.", description="Prefix of the fleetrun topics (results, status...)."
    )
    group_id: str = Field(default="fleetrun-sink", description="Kafka consumer group of the sinks.")
    id: str = Field(
        default="", description="Name of this sink in dead letters and logs (default hostname-pid)."
    )
    session_timeout_ms: int = Field(default=10_000, description="Kafka consumer session timeout.")
    max_poll_interval_ms: int = Field(
        default=300_000,
        description="Kafka max.poll.interval.ms; the loop keeps "
        "polling while partitions are paused.",
    )
    fetch_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        description="Most bytes one fetch from the broker returns (all partitions).",
    )
    max_partition_fetch_bytes: int = Field(
        default=1024 * 1024,
        description="Most bytes one fetch returns per partition (a larger record still comes).",
    )
    max_poll_records: int = Field(
        default=500,
        ge=1,
        description="Most records one poll hands to the loop (decoded in one slice of CPU, "
        "before flushes and commits get their turn).",
    )
    kafka_check_crcs: bool = Field(
        default=True,
        description="Verify each record batch's CRC32C (catches on-disk corruption); off saves "
        "a little CPU per record.",
    )
    kafka_timeout_s: float = Field(
        default=30.0,
        description="Deadline for a Kafka operation: start, offset commit, dead-letter publish.",
    )
    dlq_max_request_bytes: int = Field(
        default=16 * 1024 * 1024,
        description="Largest dead-letter record published (keep "
        "within the broker's message.max.bytes).",
    )

    # -- batching --------------------------------------------------------------------------
    batch_max_rows: int = Field(
        default=5_000, ge=1, description="Flush a partition's batch at this many records."
    )
    batch_max_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1,
        description="Flush a partition's batch at this many record bytes.",
    )
    linger_ms: float = Field(
        default=250.0,
        description="Flush a partition's batch when its oldest record has waited this long.",
    )
    flush_caught_up: bool = Field(
        default=True,
        description="Flush a partition's batch as soon as the sink has read all it holds "
        "(a lone request's rows land at once; under a backlog batches still fill); "
        "false: wait for linger_ms or a full batch.",
    )
    max_buffer_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1,
        description="Record bytes buffered across partitions; past it the "
        "largest batches flush at once and fetching pauses.",
    )
    max_inflight_flushes: int = Field(
        default=3,
        ge=1,
        description="Flushes (one transaction each, one partition each) running at once.",
    )

    # -- PostgreSQL ------------------------------------------------------------------------
    pg_dsn: SecretStr = Field(
        default=SecretStr("postgresql://fleetrun@127.0.0.1:5432/fleetrun"),
        description="PostgreSQL DSN.",
    )
    pg_owner_user: Maybe[str] = Field(
        default=None,
        description="Role that owns the schema (a member of fleetrun_owner): migrations and "
        "partition DDL connect as it, to pg_dsn's host and database, while pg_dsn's user (a "
        "member of fleetrun_writer) only writes. Unset: pg_dsn's user does both.",
    )
    pg_owner_password: Maybe[SecretStr] = Field(
        default=None, description="Password of pg_owner_user (unset: pg_dsn's, or none)."
    )
    pg_pool_min_size: int = Field(
        default=0,
        description="Connections the pool keeps open even when "
        "idle (0: opened on demand, kept 5 min).",
    )
    pg_pool_max_size: int = Field(
        default=4,
        ge=1,
        description="Most connections the pool opens (one per "
        "flush, one for partition maintenance).",
    )
    pg_connect_timeout_s: float = Field(
        default=10.0, description="Deadline for opening one connection."
    )
    pg_statement_timeout_s: float = Field(
        default=60.0,
        description="Deadline for one statement (COPY, INSERT, DDL); past it the flush is retried.",
    )
    retry_backoff_s: float = Field(
        default=0.2,
        description="First delay before retrying a flush after "
        "a database error; doubles, with jitter.",
    )
    retry_backoff_max_s: float = Field(
        default=10.0, description="Longest delay between flush retries."
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Apply pending schema migrations at start (serialised by an advisory lock).",
    )

    # -- partitions and retention ------------------------------------------------------------
    partition_interval: PartitionInterval = Field(
        default="daily", description="Time span of one results partition: daily, weekly or monthly."
    )
    partition_ahead_days: int = Field(
        default=7,
        ge=0,
        description="Partitions are created this many days "
        "ahead; results later than that are refused.",
    )
    retention_days: int = Field(
        default=30,
        ge=0,
        description="Results partitions wholly older than this are dropped; 0 keeps everything.",
    )
    dead_letter_retention_days: int = Field(
        default=90, description="dead_letters rows older than this are deleted; 0 keeps everything."
    )
    maintenance_interval_s: float = Field(
        default=3600.0,
        description="How often the running sink creates partitions ahead and applies retention.",
    )

    # -- lifecycle and operations ------------------------------------------------------------
    shutdown_timeout_s: float = Field(
        default=30.0,
        description="On SIGTERM: deadline to flush what is buffered, commit, and close the pool.",
    )
    rebalance_timeout_s: float = Field(
        default=10.0,
        description="On a rebalance: how long in-flight flushes of revoked partitions may finish.",
    )
    ops_host: str = Field(
        default="127.0.0.1", description="Address of the /metrics and /healthz endpoint."
    )
    ops_port: int = Field(
        default=9465, description="Port of the /metrics and /healthz endpoint; 0 = any free port."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field(default="text", description="text (key=value) or json.")

    @model_validator(mode="after")
    def _enough_connections(self) -> Self:
        if self.pg_pool_max_size < self.max_inflight_flushes:
            raise ValueError(
                f"{self.env_name('pg_pool_max_size')} must be at least "
                f"{self.env_name('max_inflight_flushes')} (each flush holds one connection)"
            )
        return self

    @property
    def name(self) -> str:
        """The sink's id, defaulting to hostname-pid."""
        return self.id or default_instance_id()

    @property
    def results_topic(self) -> str:
        return self.topic_prefix + "results"

    @property
    def status_topic(self) -> str:
        return self.topic_prefix + "status"

    @property
    def dlq_topic(self) -> str:
        return self.topic_prefix + "dlq"

    def owner_login(self) -> tuple[str | None, str | None]:
        """(user, password) for asyncpg to log in as the schema owner; None leaves pg_dsn's
        own (asyncpg's keyword arguments take precedence over the DSN's)."""
        password = self.pg_owner_password
        return self.pg_owner_user, None if password is None else password.get_secret_value()
