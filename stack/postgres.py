"""PostgreSQL from Debian packages, in the stack's own data directory and port."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from stack.config import (
    PG_OWNER_USER,
    PG_READER_USER,
    PG_SERVER_SETTINGS,
    PG_WRITER_USER,
    StackConfig,
)
from stack.proc import StackError, apt_install, fail, run

START_TIMEOUT_S = 60


def _bin_dir() -> Path:
    """The newest PostgreSQL server binaries installed by Debian's packages."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin/initdb")),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        raise StackError("postgres: no server under /usr/lib/postgresql after installing")
    return versions[-1].parent


class Postgres:
    """A PostgreSQL cluster that never touches a system cluster: own directory, own port."""

    name = "postgres"

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "postgres"
        self.data_dir = self.home / "data"
        self.socket_dir = self.home / "run"
        self.log = self.home / "postgres.log"
        # PostgreSQL refuses to run as root; it runs as the Debian `postgres` user instead.
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def install(self) -> None:
        if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
            apt_install(["postgresql"])

    def pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"postgres" in cmdline else None

    def up(self) -> None:
        """initdb on first use, start, then make sure the fleetrun role and database exist."""
        if self.pid() is None:
            self._init_once()
            settings = " ".join(f"-c {k}={v}" for k, v in PG_SERVER_SETTINGS.items())
            self._pg_ctl(
                "start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log), "-o", settings
            )
        self._ensure_role_and_db()

    def down(self) -> None:
        if self.pid() is not None:
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(START_TIMEOUT_S))

    def status(self) -> tuple[bool, str]:
        pid = self.pid()
        where = f"127.0.0.1:{self.cfg.pg_port} db=fleetrun data={self.data_dir}"
        return pid is not None, f"pid {pid} {where}" if pid else where

    def _pg_ctl(self, *args: str) -> None:
        try:
            run(
                [str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args],
                what=f"postgres: pg_ctl {args[0]}",
                user=self.user,
                timeout_s=START_TIMEOUT_S + 15,
            )
        except StackError as exc:
            raise fail("postgres", str(exc), self.log) from None

    def _init_once(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.home, self.data_dir, self.socket_dir):
                shutil.chown(path, self.user, self.user)
        self.data_dir.chmod(0o700)
        run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            what="postgres: initdb",
            user=self.user,
            timeout_s=120,
        )
        conf = self.data_dir / "postgresql.conf"
        extra = f"""
# --- fleetrun local stack ---
listen_addresses = '127.0.0.1'
port = {self.cfg.pg_port}
unix_socket_directories = '{self.socket_dir}'
max_connections = 200
logging_collector = off
log_min_duration_statement = 2000
"""
        with conf.open("a") as f:
            f.write(extra)
        hba = self.data_dir / "pg_hba.conf"
        if os.geteuid() != 0:
            # The socket directory is private to this user; TCP still needs the password.
            hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
            return
        # Peer auth maps OS users to roles; root may administer the cluster as `postgres`.
        ident = self.data_dir / "pg_ident.conf"
        with ident.open("a") as f:
            f.write("fleetrun_admin root postgres\nfleetrun_admin postgres postgres\n")
        hba.write_text(
            "local all postgres peer map=fleetrun_admin\n"
            "local all all peer\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    def psql(self, sql: str, *, db: str = "postgres") -> str:
        """Run SQL as the cluster's superuser over the unix socket; return its output."""
        return run(
            [
                str(_bin_dir() / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.cfg.pg_port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
            what="postgres: psql",
            user=self.user,
            timeout_s=60,
        )

    def _ensure_role_and_db(self) -> None:
        # The role may create databases: integration tests use one database per test.
        if self.psql("SELECT 1 FROM pg_roles WHERE rolname = 'fleetrun'").strip() != "1":
            self.psql("CREATE ROLE fleetrun LOGIN CREATEDB PASSWORD 'fleetrun'")
        if self.psql("SELECT 1 FROM pg_database WHERE datname = 'fleetrun'").strip() != "1":
            self.psql("CREATE DATABASE fleetrun OWNER fleetrun")
        self.psql(_ROLES_SQL)


# The group roles of sink/migrations/0005_roles.sql, made here by the superuser so the migrating
# user needs no CREATEROLE, and the stack's login users in them (stack/config.py PG_*_USER).
_ROLES_SQL = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleetrun_owner') THEN
        CREATE ROLE fleetrun_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleetrun_writer') THEN
        CREATE ROLE fleetrun_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleetrun_reader') THEN
        CREATE ROLE fleetrun_reader NOLOGIN;
    END IF;
    IF NOT pg_has_role('{PG_OWNER_USER}', 'fleetrun_owner', 'MEMBER') THEN
        GRANT fleetrun_owner TO {PG_OWNER_USER};
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_WRITER_USER}') THEN
        CREATE ROLE {PG_WRITER_USER} LOGIN PASSWORD '{PG_WRITER_USER}' IN ROLE fleetrun_writer;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_READER_USER}') THEN
        CREATE ROLE {PG_READER_USER} LOGIN PASSWORD '{PG_READER_USER}' IN ROLE fleetrun_reader;
    END IF;
END
$$"""  # noqa: S608 - constants of stack/config.py, not input
