"""The CLI's settings: where Kafka and PostgreSQL are, and who is asking."""

from __future__ import annotations

import getpass
import socket

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from fleetrun.runtime.kafkaauth import KafkaClientSettings
from fleetrun.runtime.settings import Maybe, UserPath


def default_principal() -> str:
    """user@hostname of whoever runs the CLI."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class CliSettings(KafkaClientSettings):
    """Settings of `fleetrun run/results/status/requests/hosts/config`; env FLEETRUN_CLI_<NAME> or
    TOML `[cli]`."""

    model_config = SettingsConfigDict(env_prefix="FLEETRUN_CLI_")

    topic_prefix: str = Field(default="fleetrun.", description="Prefix of the fleetrun topics.")
    pg_dsn: SecretStr = Field(
        default=SecretStr("postgresql://fleetrun@127.0.0.1:5432/fleetrun"),
        description="PostgreSQL DSN the sink writes to (for results/status/requests).",
    )
    inventory: Maybe[UserPath] = Field(
        default=None,
        description="The collector's inventory file, for `fleetrun hosts` previews of @groups.",
    )
    principal: str = Field(default="", description="Who submits requests (default: user@hostname).")
    sign_key: Maybe[UserPath] = Field(
        default=None,
        description="Sign requests with this SSH key (a private key file, or a .pub whose "
        "private half is in ssh-agent); see `run --sign-key`.",
    )
    kafka_timeout_s: float = Field(
        default=15.0, description="Deadline to reach Kafka and have a request acked."
    )
    pg_timeout_s: float = Field(
        default=10.0, description="Deadline for PostgreSQL connections and queries."
    )

    @property
    def who(self) -> str:
        """The principal recorded in requests."""
        return self.principal or default_principal()
