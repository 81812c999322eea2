"""The collector's one settings object. Built at the edge (CLI / __main__), passed everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetrun.settings import default_instance_id, setting


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """Everything the collector can be told; env FLEETRUN_<NAME> or TOML `[collector]`."""

    # -- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap: str = setting("127.0.0.1:9092", "Kafka bootstrap servers, comma-separated.")
    topic_prefix: str = setting("fleetrun.", "Prefix of the fleetrun topics (requests, ...).")
    group_id: str = setting("fleetrun-collector", "Kafka consumer group of the collectors.")
    collector_id: str = setting(
        "", "Name of this collector in results and status records (default: hostname-pid)."
    )
    max_inflight_requests: int = setting(
        16, "Requests executing at once; past it the collector pauses its partitions."
    )
    max_poll_interval_ms: int = setting(
        300_000, "Kafka max.poll.interval.ms: the loop keeps polling while partitions are paused."
    )
    session_timeout_ms: int = setting(30_000, "Kafka consumer session timeout.")
    rebalance_drain_s: float = setting(
        20.0,
        "On partition revocation: how long in-flight requests of the revoked partitions may "
        "finish (then they are cancelled and redelivered); keep below max_poll_interval_ms.",
    )
    publish_timeout_s: float = setting(
        60.0, "Deadline for Kafka to acknowledge a published record (acks=all)."
    )
    max_message_bytes: int = setting(
        1_000_000,
        "Largest result record published; output is truncated further to fit the broker's limit.",
    )
    producer_batch_bytes: int = setting(
        1_000_000,
        "Largest batch of records sent to one partition at once (keep ≤ the broker's "
        "message.max.bytes).",
    )

    # -- SSH -------------------------------------------------------------------------------
    inventory: Path | None = setting(
        None, "Inventory TOML: groups, per-host address/port/user/key/jump host."
    )
    ssh_config: Path | None = setting(
        None, "OpenSSH client config read as the base (User, Port, IdentityFile, ProxyJump)."
    )
    ssh_user: str | None = setting(None, "Login user when neither inventory nor target names one.")
    ssh_client_keys: tuple[Path, ...] = setting((), "Private key files offered to every host.")
    ssh_agent_path: str | None = setting(
        None, "ssh-agent socket to use for keys; unset means no agent."
    )
    ssh_known_hosts: Path | None = setting(
        None, "known_hosts file (may hold @cert-authority lines); default ~/.ssh/known_hosts."
    )
    ssh_verify_host_keys: bool = setting(
        True, "Verify host keys. Turning this off is for labs only and is logged loudly."
    )
    ssh_ciphers: tuple[str, ...] = setting(
        (
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
            "chacha20-poly1305@openssh.com",
            "aes128-ctr",
            "aes256-ctr",
        ),
        "SSH ciphers, preferred first. AES-GCM costs asyncssh far less CPU per packet than "
        "chacha20-poly1305 (its default first choice); empty = asyncssh's defaults.",
    )
    ssh_login_timeout_s: float = setting(15.0, "Deadline for SSH key exchange and login.")
    ssh_keepalive_interval_s: float = setting(
        15.0, "Keepalive interval on pooled connections (detects dead peers)."
    )
    ssh_keepalive_count_max: int = setting(3, "Missed keepalives before a connection is dropped.")
    max_sessions: int = setting(
        500, "Global cap on concurrent SSH sessions (commands running) across all requests."
    )
    max_connections: int = setting(
        1000, "Cap on open pooled SSH connections (the file-descriptor budget)."
    )
    max_sessions_per_connection: int = setting(
        8, "Channels opened at once on one connection (keep below the hosts' sshd MaxSessions)."
    )
    pool_idle_ttl_s: float = setting(300.0, "Close a pooled connection idle for this long.")
    ssh_kill_grace_s: float = setting(
        2.0,
        "A command past timeout_s gets TERM (its process group), then KILL after this long, "
        "then its channel is closed after this long again.",
    )
    retry_backoff_s: float = setting(
        1.0, "First delay before re-trying an unreachable host; doubles, with jitter."
    )
    retry_backoff_max_s: float = setting(15.0, "Longest delay between connection attempts.")

    # -- lifecycle and operations ---------------------------------------------------------
    shutdown_grace_s: float = setting(
        30.0, "On SIGTERM: how long in-flight hosts may finish before being abandoned."
    )
    ops_host: str = setting("127.0.0.1", "Address of the /metrics and /healthz endpoint.")
    ops_port: int = setting(9464, "Port of the /metrics and /healthz endpoint; 0 = any free port.")
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = setting("text", "text (key=value) or json.")

    @property
    def name(self) -> str:
        """The collector's id, defaulting to hostname-pid."""
        return self.collector_id or default_instance_id()
