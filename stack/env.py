"""The running local stack as tests see it: the settings `python -m stack up` wrote."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetrun.runtime.kafkaauth import KafkaClientSettings, client_options
from stack.config import StackConfig
from stack.kafkasec import KafkaSecrets


@dataclass(frozen=True, slots=True)
class SshTestHost:
    """One sshd test host of the stack."""

    name: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class StackEnv:
    """Connection settings for Kafka, PostgreSQL and the sshd hosts, from the stack's env file."""

    values: dict[str, str]
    path: Path

    @classmethod
    def load(cls, path: Path | None = None) -> StackEnv:
        """Parse the env file (KEY=VALUE lines); FileNotFoundError when the stack never ran."""
        path = path or StackConfig.from_env().env_file
        values: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
        return cls(values, path)

    def __getitem__(self, key: str) -> str:
        try:
            return self.values[key]
        except KeyError:
            raise KeyError(f"{key} is not in {self.path}; re-run `make stack-up`") from None

    @property
    def kafka_bootstrap(self) -> str:
        return self["FLEETRUN_KAFKA_BOOTSTRAP"]

    @property
    def kafka_admin(self) -> dict[str, Any]:
        """The KafkaClientSettings fields of the stack's super user (tests and benchmarks make
        topics under prefixes of their own, which no service's ACLs cover); none when the
        stack's Kafka takes plaintext."""
        protocol = self.values.get("FLEETRUN_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
        if protocol == "PLAINTEXT":
            return {}
        return {
            "kafka_security_protocol": protocol,
            "kafka_sasl_mechanism": self["FLEETRUN_KAFKA_SASL_MECHANISM"],
            "kafka_sasl_username": self["FLEETRUN_STACK_KAFKA_ADMIN_USERNAME"],
            "kafka_sasl_password_file": Path(self["FLEETRUN_STACK_KAFKA_ADMIN_PASSWORD_FILE"]),
            "kafka_ssl_ca_file": Path(self["FLEETRUN_KAFKA_SSL_CA_FILE"]),
        }

    def kafka_principal(self, principal: str) -> dict[str, Any]:
        """The KafkaClientSettings fields of one of the stack's principals (stack/kafkasec.py)."""
        secrets = KafkaSecrets(Path(self["FLEETRUN_STACK_DIR"]) / "kafka")
        return {**self.kafka_admin, **secrets.client_settings(principal)}

    def kafka_client_fields(self, bootstrap: str | None = None) -> dict[str, Any]:
        """KafkaClientSettings fields reaching the stack's Kafka (or `bootstrap`) as the super
        user."""
        return {"kafka_bootstrap": bootstrap or self.kafka_bootstrap, **self.kafka_admin}

    def kafka_client(self, bootstrap: str | None = None, **fields: Any) -> dict[str, Any]:
        """aiokafka keyword arguments reaching the stack's Kafka (or `bootstrap`, a proxy in
        front of it) as the super user, or as `fields` say (another principal)."""
        chosen = fields or self.kafka_admin
        return client_options(
            KafkaClientSettings(kafka_bootstrap=bootstrap or self.kafka_bootstrap, **chosen)
        )

    @property
    def pg_dsn(self) -> str:
        return self["FLEETRUN_PG_DSN"]

    @property
    def ssh_user(self) -> str:
        return self["FLEETRUN_COLLECTOR_SSH_USER"]

    @property
    def client_key(self) -> Path:
        return Path(self["FLEETRUN_COLLECTOR_SSH_CLIENT_KEYS"])

    @property
    def known_hosts(self) -> Path:
        return Path(self["FLEETRUN_COLLECTOR_SSH_KNOWN_HOSTS"])

    @property
    def inventory(self) -> Path:
        return Path(self["FLEETRUN_COLLECTOR_INVENTORY"])

    @property
    def ssh_hosts(self) -> list[SshTestHost]:
        hosts = []
        for item in self["FLEETRUN_STACK_SSH_HOSTS"].split(","):
            name, _, addr = item.partition("=")
            address, _, port = addr.rpartition(":")
            hosts.append(SshTestHost(name, address, int(port)))
        return hosts


@functools.cache
def _stack_env() -> StackEnv | None:
    try:
        return StackEnv.load()
    except FileNotFoundError:
        return None


def kafka_options(bootstrap: str) -> dict[str, Any]:
    """aiokafka keyword arguments for `bootstrap` as the local stack's super user: for the helpers
    tests and benchmarks share, which are handed only an address. Plaintext when no stack ran."""
    env = _stack_env()
    if env is None:
        return {"bootstrap_servers": bootstrap}
    return env.kafka_client(bootstrap)


def kafka_admin_environ() -> dict[str, str]:
    """The local stack's super user as FLEETRUN_KAFKA_* variables, for the services benchmarks
    start on topics of their own (no service principal's ACLs cover them)."""
    env = _stack_env()
    if env is None:
        return {}
    return {"FLEETRUN_" + name.upper(): str(value) for name, value in env.kafka_admin.items()}
