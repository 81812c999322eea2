"""The stack as a whole: bring every service up or down, report status, write the env file."""

from __future__ import annotations

import shutil
from typing import Protocol

from stack.apps import App
from stack.config import PG_OWNER_USER, PG_READER_USER, PG_WRITER_USER, StackConfig
from stack.kafka import Kafka
from stack.postgres import Postgres
from stack.sshd import SshHosts


class Service(Protocol):
    name: str

    def install(self) -> None: ...
    def up(self) -> None: ...
    def down(self) -> None: ...
    def status(self) -> tuple[bool, str]: ...


class Stack:
    """Kafka, PostgreSQL and the sshd hosts of one state directory."""

    def __init__(self, cfg: StackConfig | None = None) -> None:
        self.cfg = cfg or StackConfig.from_env()
        self.kafka = Kafka(self.cfg)
        self.postgres = Postgres(self.cfg)
        self.sshd = SshHosts(self.cfg)
        self.services: list[Service] = [self.kafka, self.postgres, self.sshd]
        # fleetrun's own services, started only on request (the demo); tests start their own.
        base = self.cfg.app_port_base
        self.apps = [
            App(self.cfg, "collector", ops_port=base),
            App(self.cfg, "sink", ops_port=base + 1, prepare=["migrate"]),
            # The console serves /healthz and /metrics beside its pages, on its one port.
            App(self.cfg, "web", ops_port=base + 2, port_setting="PORT"),
        ]

    @property
    def web_url(self) -> str:
        """Where `up --apps` serves the web console."""
        return f"http://127.0.0.1:{self.cfg.app_port_base + 2}/"

    def service(self, name: str) -> Service:
        for svc in [*self.services, *self.apps]:
            if svc.name == name:
                return svc
        names = ", ".join(s.name for s in [*self.services, *self.apps])
        raise SystemExit(f"unknown service {name!r}; choose one of: {names}")

    def up(self, *, apps: bool = False) -> None:
        """Install what is missing and start what is not running; a no-op when all run."""
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.state_dir.chmod(0o755)  # the postgres user must reach its data directory
        for svc in self.services:
            svc.install()
        for svc in self.services:
            svc.up()
        self.write_env()
        if apps:
            for app in self.apps:
                app.up()
        else:
            self.forget_stopped_apps()

    def forget_stopped_apps(self) -> None:
        """Remove app pid files whose process is gone (a reboot, a crash).

        `status` lists an app while its pid file exists, as DOWN when it no longer runs; an `up`
        without --apps does not ask for the apps, so it should not leave them reported as down.
        """
        for app in self.apps:
            if app.pid() is None:
                app.pid_file.unlink(missing_ok=True)

    def down(self) -> None:
        """Stop every process this stack started (by pid file); data stays for the next `up`."""
        for svc in [*reversed(self.apps), *reversed(self.services)]:
            svc.down()

    def reset(self) -> None:
        """Stop everything and delete the state directory (data, keys, logs)."""
        self.down()
        shutil.rmtree(self.cfg.state_dir, ignore_errors=True)

    def status(self) -> list[tuple[str, bool, str, str]]:
        """(service, running, where, log file) for each service."""
        logs = {
            "kafka": str(self.kafka.log),
            "postgres": str(self.postgres.log),
            "sshd": str(self.sshd.home / "<host>" / "sshd.log"),
        }
        rows = []
        for svc in self.services:
            running, where = svc.status()
            rows.append((svc.name, running, where, logs[svc.name]))
        for app in self.apps:
            if app.pid_file.exists():  # listed once started with --apps
                running, where = app.status()
                rows.append((app.name, running, where, str(app.log)))
        return rows

    @property
    def inventory_file(self) -> str:
        return str(self.cfg.state_dir / "inventory.toml")

    def write_env(self) -> None:
        """Write the settings tests, the demo and the services read (when pointed at the file
        with FLEETRUN_ENV_FILE). It holds the database password: only its owner may read it."""
        hosts = ",".join(f"{h.name}={h.address}:{h.port}" for h in self.sshd.hosts)
        values = {
            "FLEETRUN_KAFKA_BOOTSTRAP": self.cfg.kafka_bootstrap,
            "FLEETRUN_TOPIC_PREFIX": self.cfg.topic_prefix,
            "FLEETRUN_PG_DSN": self.cfg.pg_dsn,
            # The sink writes as the writer; migrations and partition DDL log in as the owner.
            "FLEETRUN_SINK_PG_DSN": self.cfg.pg_dsn_as(PG_WRITER_USER),
            "FLEETRUN_SINK_PG_OWNER_USER": PG_OWNER_USER,
            "FLEETRUN_SINK_PG_OWNER_PASSWORD": PG_OWNER_USER,
            "FLEETRUN_STACK_PG_READER_DSN": self.cfg.pg_dsn_as(PG_READER_USER),
            # The CLI and the console only read: they log in as the read-only role.
            "FLEETRUN_CLI_PG_DSN": self.cfg.pg_dsn_as(PG_READER_USER),
            "FLEETRUN_WEB_PG_DSN": self.cfg.pg_dsn_as(PG_READER_USER),
            # SASL/SCRAM over TLS: each service its own principal and password file.
            **self.kafka.secrets.env_lines(),
            "FLEETRUN_COLLECTOR_SSH_USER": self.cfg.ssh_user,
            "FLEETRUN_COLLECTOR_SSH_CLIENT_KEYS": str(self.sshd.client_key),
            "FLEETRUN_COLLECTOR_SSH_KNOWN_HOSTS": str(self.sshd.known_hosts),
            "FLEETRUN_COLLECTOR_INVENTORY": self.inventory_file,
            "FLEETRUN_CLI_INVENTORY": self.inventory_file,  # for `fleetrun hosts @demo`
            "FLEETRUN_STACK_SSH_HOSTS": hosts,
            "FLEETRUN_STACK_DIR": str(self.cfg.state_dir),
        }
        lines = ["# Written by `python -m stack up`; read by tests, the demo and the services."]
        lines += [f"{k}={v}" for k, v in values.items()]
        self.cfg.env_file.touch(mode=0o600)
        self.cfg.env_file.chmod(0o600)  # also when an older stack wrote it readable by all
        self.cfg.env_file.write_text("\n".join(lines) + "\n")
        self._write_inventory()

    def _write_inventory(self) -> None:
        lines = [
            "# Collector inventory for the local stack's sshd hosts (generated by `stack up`).",
            "[defaults]",
            f'user = "{self.cfg.ssh_user}"',
            "",
        ]
        for h in self.sshd.hosts:
            lines += [f"[hosts.{h.name}]", f'address = "{h.address}"', f"port = {h.port}", ""]
        names = ", ".join(f'"{h.name}"' for h in self.sshd.hosts)
        lines += ["[groups]", f"demo = [{names}]", ""]
        (self.cfg.state_dir / "inventory.toml").write_text("\n".join(lines))
