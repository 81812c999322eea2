"""How every fleetrun Kafka client connects: one block of settings, one function to aiokafka.

`KafkaClientSettings` is the settings block each service (collector, sink, web) and the CLI
inherit: bootstrap servers, security protocol, SASL mechanism, user, password (a SecretStr or a
file), CA file. `client_options(settings)` turns it into aiokafka's keyword arguments; every
producer, consumer, admin client and probe is built from it, so no client can miss a setting.

Plaintext stays possible (`kafka_security_protocol=PLAINTEXT`, the default of the settings
class, for brokers without authentication); the local stack and docker-compose.yml use
SASL_SSL with SCRAM-SHA-512 and ACLs per principal (README, "Connecting to a secured Kafka").
"""

from __future__ import annotations

import asyncio
import ssl
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from pydantic import Field, SecretStr, model_validator

from fleetrun.runtime.settings import Maybe, ServiceSettings, SettingsError, UserPath

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

# Kafka's answers when the principal lacks an ACL: not retriable, and not "Kafka is down".
REFUSALS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


class KafkaClientSettings(ServiceSettings):
    """Where Kafka is and who this client is to it; the base of every service's settings."""

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated."
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="PLAINTEXT (no authentication), SSL, SASL_PLAINTEXT or SASL_SSL (the local "
        "stack's and docker-compose's).",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512", description="SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256, PLAIN."
    )
    kafka_sasl_username: Maybe[str] = Field(
        default=None, description="SASL user (the Kafka principal User:<name>)."
    )
    kafka_sasl_password: Maybe[SecretStr] = Field(
        default=None, description="SASL password (or kafka_sasl_password_file)."
    )
    kafka_sasl_password_file: Maybe[UserPath] = Field(
        default=None,
        description="File holding the SASL password (mode 0600), read when a client connects.",
    )
    kafka_ssl_ca_file: Maybe[UserPath] = Field(
        default=None,
        description="PEM CA certificate(s) the broker's certificate is checked against "
        "(default: the system's).",
    )

    @model_validator(mode="after")
    def _kafka_auth_complete(self) -> Self:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        user, pw, pw_file = (
            self.kafka_sasl_username,
            self.kafka_sasl_password,
            self.kafka_sasl_password_file,
        )
        if sasl and not user:
            raise ValueError(
                f"{self.env_name('kafka_security_protocol')}={self.kafka_security_protocol} "
                f"needs a user: set {self.env_name('kafka_sasl_username')}"
            )
        if sasl and (pw is None) == (pw_file is None):
            raise ValueError(
                f"{self.env_name('kafka_security_protocol')}={self.kafka_security_protocol} needs "
                f"exactly one of {self.env_name('kafka_sasl_password')} and "
                f"{self.env_name('kafka_sasl_password_file')}"
            )
        return self

    def kafka_password(self) -> str:
        """The SASL password, from the setting or read now from its file."""
        if self.kafka_sasl_password is not None:
            return self.kafka_sasl_password.get_secret_value()
        path = self.kafka_sasl_password_file
        if path is None:
            return ""
        return read_secret_file(path, self.env_name("kafka_sasl_password_file"))


def read_secret_file(path: Path, setting: str) -> str:
    """A password file's first line; refused when others may read it, with the fix."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{setting}={path}: cannot read it ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(
            f"{setting}={path}: mode {stat.S_IMODE(mode):04o} lets others read the password; "
            f"run `chmod 600 {path}`"
        )
    password = text.splitlines()[0] if text else ""
    if not password:
        raise SettingsError(f"{setting}={path}: the file is empty")
    return password


def ssl_context(ca_file: Path | None, setting: str = "kafka_ssl_ca_file") -> ssl.SSLContext:
    """A client TLS context that verifies the broker's certificate and name."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"{setting}={ca_file}: not a readable PEM CA file ({exc})") from None


def client_options(settings: KafkaClientSettings) -> dict[str, Any]:
    """aiokafka keyword arguments (bootstrap and security) for a producer, consumer or admin."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(
            settings.kafka_ssl_ca_file, settings.env_name("kafka_ssl_ca_file")
        )
    if protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_password(),
        }
    return options


def who(settings: KafkaClientSettings) -> str:
    """The principal a client connects as, for error messages ("as User:sink")."""
    if settings.kafka_security_protocol.startswith("SASL_"):
        return f"User:{settings.kafka_sasl_username}"
    return "an unauthenticated client"


def kafka_fields(settings: KafkaClientSettings) -> dict[str, Any]:
    """This block's values, to build another service's settings that connect the same way."""
    return {name: getattr(settings, name) for name in KafkaClientSettings.model_fields}


async def login_refusal(
    options: Mapping[str, Any], timeout_s: float = 5.0
) -> SaslAuthenticationFailed | ssl.SSLError | None:
    """Kafka's refusal of a TLS or SASL login with these client options, or None (it accepts,
    or it is not there).

    aiokafka reports a refused login like a broker that is down ("Unable to bootstrap"); one
    connection of our own, to the first bootstrap server, tells the two apart."""
    if options.get("security_protocol", "PLAINTEXT") == "PLAINTEXT":
        return None
    first = str(options["bootstrap_servers"]).split(",")[0].strip()
    host, _, port = first.rpartition(":")
    conn_options = {k: v for k, v in options.items() if k != "bootstrap_servers"}
    try:
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(host, int(port), **conn_options)
        conn.close()
    except (SaslAuthenticationFailed, ssl.SSLError) as exc:
        return exc
    except (KafkaError, OSError, TimeoutError, ValueError):
        return None
    return None


async def login_problem(settings: KafkaClientSettings, timeout_s: float = 5.0) -> str | None:
    """login_refusal for a settings block, as one line saying which settings to check."""
    refusal = await login_refusal(client_options(settings), timeout_s)
    if isinstance(refusal, SaslAuthenticationFailed):
        return (
            f"Kafka at {settings.kafka_bootstrap} refused the login of {who(settings)} "
            f"({settings.kafka_sasl_mechanism}): {refusal.args[0] if refusal.args else refusal}; "
            f"check {settings.env_name('kafka_sasl_username')} and its password"
        )
    if isinstance(refusal, ssl.SSLError):
        return (
            f"TLS with Kafka at {settings.kafka_bootstrap} failed: {refusal.reason or refusal}; "
            f"check {settings.env_name('kafka_ssl_ca_file')} (the CA that signed the broker's "
            "certificate) and the broker's name in the bootstrap address"
        )
    return None
