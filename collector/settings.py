"""The collector's one settings object. Built at the edge (CLI / __main__), passed everywhere."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from collector.confine import Override
from fleetrun.runtime.kafkaauth import KafkaClientSettings
from fleetrun.runtime.settings import (
    CommaSeparated,
    Maybe,
    UserPath,
    default_instance_id,
)


class CollectorSettings(KafkaClientSettings):
    """Everything the collector can be told; env FLEETRUN_COLLECTOR_<NAME> or TOML `[collector]`."""

    model_config = SettingsConfigDict(env_prefix="FLEETRUN_COLLECTOR_")

    # -- Kafka -----------------------------------------------------------------------------
    topic_prefix: str = Field(
        default="fleetrun.", description="Prefix of the fleetrun topics (requests, ...)."
    )
    group_id: str = Field(
        default="fleetrun-collector", description="Kafka consumer group of the collectors."
    )
    id: str = Field(
        default="",
        description="Name of this collector in results and status records (default: hostname-pid).",
    )
    max_inflight_requests: int = Field(
        default=16,
        description="Requests executing at once; past it the collector pauses its partitions.",
    )
    max_poll_interval_ms: int = Field(
        default=300_000,
        description="Kafka max.poll.interval.ms: the loop keeps "
        "polling while partitions are paused.",
    )
    session_timeout_ms: int = Field(default=30_000, description="Kafka consumer session timeout.")
    rebalance_drain_s: float = Field(
        default=20.0,
        description="On partition revocation: how long in-flight requests of "
        "the revoked partitions may finish (then they are cancelled "
        "and redelivered); keep below max_poll_interval_ms.",
    )
    ledger: bool = Field(
        default=True,
        description="Keep the execution ledger (at most one run per host and request, one "
        "request per id); off only to measure what it costs.",
    )
    ledger_retention_s: float = Field(
        default=7 * 86400.0,
        description="How long a finished request_id is remembered: the same id within it "
        "never runs again.",
    )
    shard_size: int = Field(
        default=1_000,
        ge=0,
        # A shard record lists its hosts: 10,000 names stay well inside a 1 MB Kafka record.
        le=10_000,
        description="A request with more targets than this is split into shards of at most "
        "this many hosts on the shards topic, which every collector of the group runs; "
        "0 = never split (the ledger must be on).",
    )
    cancel_lookback_s: float = Field(
        default=3600.0,
        description="How long a cancel counts: read back this far at start, and a request "
        "arriving within it after its cancel is rejected.",
    )
    cancel_max_entries: int = Field(
        default=10_000,
        description="Cancels kept in memory at most (the oldest go first).",
    )
    publish_timeout_s: float = Field(
        default=60.0, description="Deadline for Kafka to acknowledge a published record (acks=all)."
    )
    live_output: bool = Field(
        default=True,
        description="Publish live output for requests that ask for it (stream_output); off, "
        "they run as if they had not asked.",
    )
    live_output_budget_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="Output bytes a request with stream_output may stream live; past it, chunks "
        "are dropped and counted (the final results are never affected).",
    )
    live_output_flush_s: float = Field(
        default=0.1,
        gt=0.0,
        le=10.0,
        description="How long a host's output is coalesced before it goes out as a chunk.",
    )
    live_output_queue_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="Chunks waiting for Kafka, at most; past it new chunks are dropped, counted.",
    )
    max_message_bytes: int = Field(
        default=1_000_000,
        description="Largest result record published; output is "
        "truncated further to fit the broker's limit.",
    )
    producer_batch_bytes: int = Field(
        default=1_000_000,
        description="Largest batch of records sent to one partition "
        "at once (keep ≤ the broker's message.max.bytes).",
    )

    # -- SSH -------------------------------------------------------------------------------
    inventory: Maybe[UserPath] = Field(
        default=None,
        description="Inventory TOML: groups, per-host address/port/user/key/jump host.",
    )
    allow_targets: CommaSeparated[Override] = Field(
        default=(),
        description="What targets may do beyond the inventory: any of outside_inventory "
        "(names or addresses it does not list), user (`user@host`), port (`host:port`). "
        "Empty (the default): only inventory hosts and groups, with their own user and port.",
    )
    ssh_config: Maybe[UserPath] = Field(
        default=None,
        description="OpenSSH client config read as the base (User, Port, IdentityFile, ProxyJump).",
    )
    ssh_user: Maybe[str] = Field(
        default=None, description="Login user when neither inventory nor target names one."
    )
    ssh_client_keys: CommaSeparated[UserPath] = Field(
        default=(), description="Private key files offered to every host."
    )
    ssh_agent_path: Maybe[str] = Field(
        default=None, description="ssh-agent socket to use for keys; unset means no agent."
    )
    ssh_known_hosts: Maybe[UserPath] = Field(
        default=None,
        description="known_hosts file (may hold @cert-authority "
        "lines); default ~/.ssh/known_hosts.",
    )
    ssh_verify_host_keys: bool = Field(
        default=True,
        description="Verify host keys. Turning this off is for labs only and is logged loudly.",
    )
    ssh_ciphers: CommaSeparated[str] = Field(
        default=(
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
            "chacha20-poly1305@openssh.com",
            "aes128-ctr",
            "aes256-ctr",
        ),
        description="SSH ciphers, preferred first. AES-GCM costs asyncssh "
        "far less CPU per packet than chacha20-poly1305 (its "
        "default first choice); empty = asyncssh's defaults.",
    )
    ssh_login_timeout_s: float = Field(
        default=15.0, description="Deadline for SSH key exchange and login."
    )
    ssh_keepalive_interval_s: float = Field(
        default=15.0, description="Keepalive interval on pooled connections (detects dead peers)."
    )
    ssh_keepalive_count_max: int = Field(
        default=3, description="Missed keepalives before a connection is dropped."
    )
    max_sessions: int = Field(
        default=500,
        description="Global cap on concurrent SSH sessions (commands running) across all requests.",
    )
    fair_share_weights: CommaSeparated[str] = Field(
        default=(),
        description="Sessions are shared between principals by weighted deficit round robin "
        "when max_sessions is reached: PRINCIPAL=WEIGHT entries, e.g. ops=3,batch=1; "
        "a principal not named weighs 1.",
    )
    max_connections: int = Field(
        default=1000, description="Cap on open pooled SSH connections (the file-descriptor budget)."
    )
    max_sessions_per_connection: int = Field(
        default=8,
        description="Channels opened at once on one connection "
        "(keep below the hosts' sshd MaxSessions).",
    )
    pool_idle_ttl_s: float = Field(
        default=300.0, description="Close a pooled connection idle for this long."
    )
    ssh_kill_grace_s: float = Field(
        default=2.0,
        description="A command past timeout_s gets TERM (its process group), then KILL "
        "after this long, then its channel is closed after this long again.",
    )
    retry_backoff_s: float = Field(
        default=1.0,
        description="First delay before re-trying an unreachable host; doubles, with jitter.",
    )
    retry_backoff_max_s: float = Field(
        default=15.0, description="Longest delay between connection attempts."
    )

    # -- who may run what (signed requests, command policy) --------------------------------
    allowed_signers: Maybe[UserPath] = Field(
        default=None,
        description='OpenSSH allowed-signers file (principals → keys, namespaces="fleetrun") '
        "that request signatures are verified against.",
    )
    policy: Maybe[UserPath] = Field(
        default=None,
        description="Command policy TOML (rules: principals, targets, commands, templates, "
        "limits, env, overrides); when set, unsigned requests are rejected.",
    )
    require_signatures: bool = Field(
        default=False,
        description="Reject unsigned requests even without a policy (needs allowed_signers).",
    )
    signature_window_s: float = Field(
        default=300.0,
        description="A signed request's submitted_at must be within this many seconds of the "
        "collector's clock.",
    )

    # -- lifecycle and operations ---------------------------------------------------------
    shutdown_grace_s: float = Field(
        default=30.0,
        description="On SIGTERM: how long in-flight hosts may finish before being abandoned.",
    )
    ops_host: str = Field(
        default="127.0.0.1", description="Address of the /metrics and /healthz endpoint."
    )
    ops_port: int = Field(
        default=9464, description="Port of the /metrics and /healthz endpoint; 0 = any free port."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field(default="text", description="text (key=value) or json.")

    @field_validator("fair_share_weights")
    @classmethod
    def _weights_are_principal_equals_count(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            principal, sep, weight = entry.rpartition("=")
            if not sep or not principal or not weight.isdigit() or int(weight) < 1:
                raise ValueError(f"{entry!r}: expected PRINCIPAL=WEIGHT with a weight ≥ 1")
        return entries

    @property
    def fair_share_weight_map(self) -> dict[str, int]:
        """fair_share_weights as principal → weight."""
        return {
            principal: int(weight)
            for principal, _, weight in (e.rpartition("=") for e in self.fair_share_weights)
        }

    @property
    def name(self) -> str:
        """The collector's id, defaulting to hostname-pid."""
        return self.id or default_instance_id()
