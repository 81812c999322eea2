"""Where the local stack lives and which ports it uses; every knob is an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = "4.4.0"  # keep in step with stack/pom.xml and docker-compose.yml

# Topic name suffix -> partitions. Requests: the unit of collector parallelism. Results: the
# widest stream (one record per host). Status and dead letters are small.
TOPIC_PARTITIONS: dict[str, int] = {
    "requests": 6,
    "results": 12,
    "status": 6,
    "dlq": 3,
    "ledger": 6,  # the collector's execution ledger: as many partitions as requests
    "cancels": 3,  # read whole by every collector: small, so few partitions
    "output": 12,  # live output chunks: as wide as results, which they precede
    "shards": 6,  # slices of big requests, consumed by every collector of the group
    "shard-ledger": 6,  # the shards' execution ledger: as many partitions as shards
}
# Topic settings beyond the broker's defaults: the ledger keeps the last entry per key; live
# output is for watching a run, so it is kept an hour, not the broker's week.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "ledger": {"cleanup.policy": "compact"},
    "shard-ledger": {"cleanup.policy": "compact"},
    "output": {"retention.ms": "3600000"},
}

# PostgreSQL server settings, the same in the local stack (pg_ctl -o, so an existing cluster
# gets them at its next start) and in docker-compose.yml (tests/unit/test_compose.py checks).
# The sink writes over 1 KiB of WAL per result: with the default max_wal_size (1 GB) a backlog
# drain checkpointed every ~9 s ("checkpoints are occurring too frequently"), and each
# checkpoint makes the next change to every index page log a full 8 KiB page image.
PG_SERVER_SETTINGS: dict[str, str] = {
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
}

SSH_HOST_NAMES = ("demo1", "demo2", "demo3")
# PostgreSQL logins (sink/migrations/0005_roles.sql): `fleetrun` owns the database and runs the
# migrations (a member of fleetrun_owner), the sink writes as fleetrun_sink (fleetrun_writer),
# analytics reads as fleetrun_analyst (fleetrun_reader). Each password is the user's name: a
# development stack on loopback, with the env file that names them readable by its owner only.
PG_OWNER_USER = "fleetrun"
PG_WRITER_USER = "fleetrun_sink"
PG_READER_USER = "fleetrun_analyst"


def _default_state_dir() -> Path:
    # Not inside the checkout: the postgres user must traverse every parent directory of its data
    # directory, and a clone under /root or a 0700 mktemp dir would refuse it.
    if os.geteuid() == 0:
        return Path("/var/lib/fleetrun-stack")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fleetrun-stack"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetrun"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number") from None


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Paths and ports of one local stack."""

    state_dir: Path
    cache_dir: Path
    kafka_port: int
    kafka_controller_port: int
    pg_port: int
    ssh_port: int
    ssh_base_address: str
    ssh_user: str
    topic_prefix: str
    # fleetrun's own services (`up --apps`): collector, sink and web console on consecutive
    # ports from here, so two stacks on one machine do not collide.
    app_port_base: int = 9464

    @classmethod
    def from_env(cls) -> StackConfig:
        """Read FLEETRUN_STACK_* variables, with defaults that work on a fresh machine."""
        state = os.environ.get("FLEETRUN_STACK_DIR")
        cache = os.environ.get("FLEETRUN_STACK_CACHE")
        return cls(
            state_dir=Path(state).resolve() if state else _default_state_dir(),
            cache_dir=Path(cache).resolve() if cache else _default_cache_dir(),
            kafka_port=_env_int("FLEETRUN_STACK_KAFKA_PORT", 19092),
            kafka_controller_port=_env_int("FLEETRUN_STACK_KAFKA_CONTROLLER_PORT", 19093),
            pg_port=_env_int("FLEETRUN_STACK_PG_PORT", 55432),
            ssh_port=_env_int("FLEETRUN_STACK_SSH_PORT", 2222),
            ssh_base_address=os.environ.get("FLEETRUN_STACK_SSH_BASE_ADDRESS", "127.0.10.1"),
            # Root runs sshd as a real daemon and logs in as a dedicated user; anyone else can
            # only run an unprivileged sshd that logs them in as themselves.
            ssh_user="fleetrun" if os.geteuid() == 0 else _current_user(),
            topic_prefix=os.environ.get("FLEETRUN_STACK_TOPIC_PREFIX", "fleetrun."),
            app_port_base=_env_int("FLEETRUN_STACK_APP_PORT_BASE", 9464),
        )

    @property
    def env_file(self) -> Path:
        """The one file tests, the demo and the services read connection settings from."""
        return self.state_dir / "fleetrun.env"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def pg_dsn(self) -> str:
        return self.pg_dsn_as(PG_OWNER_USER)

    def pg_dsn_as(self, user: str) -> str:
        """The stack database's DSN for one of its logins (PG_*_USER)."""
        return f"postgresql://{user}:{user}@127.0.0.1:{self.pg_port}/fleetrun"

    def ssh_address(self, index: int) -> str:
        """Loopback address of test host number `index` (0-based)."""
        *head, last = self.ssh_base_address.split(".")
        return ".".join([*head, str(int(last) + index)])


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
