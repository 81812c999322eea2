"""The running local stack as tests see it: the settings `python -m stack up` wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stack.config import StackConfig


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
    def pg_dsn(self) -> str:
        return self["FLEETRUN_PG_DSN"]

    @property
    def pg_writer_dsn(self) -> str:
        """The sink's login (fleetrun_writer: no DDL)."""
        return self["FLEETRUN_SINK_PG_DSN"]

    @property
    def pg_reader_dsn(self) -> str:
        """The analytics login (fleetrun_reader: SELECT only)."""
        return self["FLEETRUN_STACK_PG_READER_DSN"]

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
