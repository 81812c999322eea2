"""The CLI's settings: where Kafka and PostgreSQL are, and who is asking."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from pathlib import Path

from fleetrun.settings import setting


def default_principal() -> str:
    """user@hostname of whoever runs the CLI."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class CliSettings:
    """Settings of `fleetrun run/results/status/requests/hosts`; env FLEETRUN_<NAME> or `[cli]`."""

    kafka_bootstrap: str = setting("127.0.0.1:9092", "Kafka bootstrap servers, comma-separated.")
    topic_prefix: str = setting("fleetrun.", "Prefix of the fleetrun topics.")
    pg_dsn: str = setting(
        "postgresql://fleetrun@127.0.0.1:5432/fleetrun",
        "PostgreSQL DSN the sink writes to (for results/status/requests).",
        secret=True,
    )
    inventory: Path | None = setting(
        None, "The collector's inventory file, for `fleetrun hosts` previews of @groups."
    )
    principal: str = setting("", "Who submits requests (default: user@hostname).")
    kafka_timeout_s: float = setting(15.0, "Deadline to reach Kafka and have a request acked.")
    pg_timeout_s: float = setting(10.0, "Deadline for PostgreSQL connections and queries.")

    @property
    def who(self) -> str:
        """The principal recorded in requests."""
        return self.principal or default_principal()
