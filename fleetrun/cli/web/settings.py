"""The web console's one settings object: env FLEETRUN_WEB_<NAME> or TOML `[web]`."""

from __future__ import annotations

import ipaddress
import socket
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from fleetrun.runtime.kafkaauth import KafkaClientSettings
from fleetrun.runtime.settings import Maybe


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebSettings(KafkaClientSettings):
    """Everything `fleetrun web` can be told."""

    model_config = SettingsConfigDict(env_prefix="FLEETRUN_WEB_")

    topic_prefix: str = Field(default="fleetrun.", description="Prefix of the fleetrun topics.")
    pg_dsn: SecretStr = Field(
        default=SecretStr("postgresql://fleetrun@127.0.0.1:5432/fleetrun"),
        description="PostgreSQL DSN the sink writes to; a read-only role is enough.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address to serve on; anything but loopback requires a token.",
    )
    port: int = Field(
        default=8470, ge=0, description="Port of the console, /healthz and /metrics; 0 = any."
    )
    token: Maybe[SecretStr] = Field(
        default=None,
        description="Viewers present it as `Authorization: Bearer` or once as ?token= (then a "
        "cookie); required when host is not loopback.",
    )
    allow_cancel: bool = Field(
        default=True, description="Show the cancel button on running requests."
    )
    principal: str = Field(
        default="",
        description="Who the console's cancels are recorded as (default: web@hostname).",
    )
    page_size: int = Field(default=50, ge=1, le=1000, description="Requests per list page.")
    host_results: int = Field(
        default=50, ge=1, le=1000, description="Recent results shown on a host's page."
    )
    live_queue: int = Field(
        default=256,
        ge=1,
        description="Events held per open request page; a slower browser is told to reload.",
    )
    pg_pool_max_size: int = Field(default=4, ge=1, description="PostgreSQL connections at most.")
    pg_timeout_s: float = Field(
        default=10.0, gt=0, description="Deadline for PostgreSQL connections and queries."
    )
    kafka_timeout_s: float = Field(
        default=15.0, gt=0, description="Deadline to reach Kafka and to have a cancel acked."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field(default="text", description="text (key=value) or json.")

    @model_validator(mode="after")
    def _token_when_exposed(self) -> Self:
        if not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"{self.env_name('host')}={self.host} is reachable from other machines: set "
                f"{self.env_name('token')} (or serve on 127.0.0.1 behind a proxy that "
                "authenticates)"
            )
        return self

    @property
    def who(self) -> str:
        """The principal recorded in the console's cancels."""
        return self.principal or f"web@{socket.gethostname()}"
