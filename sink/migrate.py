"""Versioned SQL migrations: sink/migrations/NNNN_name.sql, applied in order, each once.

Safe to run twice and from several processes at once: the whole run holds a session-level
advisory lock, each migration runs in its own transaction together with its row in
schema_migrations, and the row keeps the file's SHA-256 so an applied file that was edited
afterwards is refused instead of silently diverging.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from sink.errors import MigrationError

log = logging.getLogger("fleetrun.sink.migrate")

# pg_advisory_lock key shared by every fleetrun migrator: "fleetrun" in ASCII, as an int64.
MIGRATION_LOCK: Final = int.from_bytes(b"fleetrun", "big") & 0x7FFF_FFFF_FFFF_FFFF
# Migrations may rewrite big tables, and a second migrator waits for the first: generous, but
# still a deadline.
MIGRATION_TIMEOUT_S: Final = 900.0
Conn = asyncpg.Connection | PoolConnectionProxy
_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql\Z")

_CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


# SET LOCAL ROLE to the role that owns `table`, when it is another role the session is a member
# of: objects a migration or partition maintenance creates then belong to that role (after
# 0005_roles.sql, fleetrun_owner, whose default privileges grant the writer and reader), not
# to whichever login ran it. No row (same role, or not a member): nothing changes.
_ACT_AS_OWNER: Final = """
SELECT set_config('role', r.rolname, true)
FROM pg_class AS c JOIN pg_roles AS r ON r.oid = c.relowner
WHERE c.oid = to_regclass($1)
  AND r.rolname <> current_user
  AND pg_has_role(current_user, r.oid, 'MEMBER')
"""


async def act_as_owner(conn: Conn, table: str, timeout_s: float) -> None:
    """Within a transaction: act as `table`'s owner role until it ends (see _ACT_AS_OWNER)."""
    await conn.fetchval(_ACT_AS_OWNER, table, timeout=timeout_s)


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a run did: versions applied now, and the schema version after it."""

    applied: tuple[int, ...]
    version: int


def load_migrations() -> list[Migration]:
    """The migration files shipped with the sink, in version order; checks the numbering."""
    folder = resources.files("sink").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if entry.name.endswith(".sql") and m is None:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_lower_name.sql")
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    # Increasing and unique, gaps allowed: migrations written side by side on branches (each
    # independent of the numbers it skips) can land in either order.
    if len(set(versions)) != len(versions) or (versions and versions[0] < 1):
        raise MigrationError(f"migration versions must be unique and from 1 up, got {versions}")
    return found


async def migrate(conn: asyncpg.Connection) -> MigrationReport:
    """Bring the database to the newest schema; return what was applied."""
    migrations = load_migrations()
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK, timeout=MIGRATION_TIMEOUT_S)
    try:
        await conn.execute(_CREATE_TABLE, timeout=MIGRATION_TIMEOUT_S)
        applied = await _applied(conn)
        _check_applied(migrations, applied)
        done = []
        for mig in migrations:
            if mig.version in applied:
                continue
            log.info("applying migration", extra={"migration": mig.filename})
            try:
                async with conn.transaction():
                    await act_as_owner(conn, "schema_migrations", MIGRATION_TIMEOUT_S)
                    await conn.execute(mig.sql, timeout=MIGRATION_TIMEOUT_S)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        mig.version,
                        mig.name,
                        mig.checksum,
                        timeout=MIGRATION_TIMEOUT_S,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{mig.filename} failed: {exc}") from exc
            done.append(mig.version)
        return MigrationReport(tuple(done), migrations[-1].version if migrations else 0)
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK, timeout=30)


async def pending(conn: asyncpg.Connection) -> list[Migration]:
    """Migrations not applied yet (raises MigrationError if applied ones were edited)."""
    migrations = load_migrations()
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL", timeout=30)
    applied = await _applied(conn) if exists else {}
    _check_applied(migrations, applied)
    return [mig for mig in migrations if mig.version not in applied]


async def _applied(conn: asyncpg.Connection) -> dict[int, str]:
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations", timeout=30)
    return {row["version"]: row["checksum"] for row in rows}


def _check_applied(migrations: list[Migration], applied: dict[int, str]) -> None:
    known = {mig.version: mig for mig in migrations}
    newer = sorted(v for v in applied if v not in known)
    if newer:
        raise MigrationError(
            f"the database has schema version(s) {newer} that this sink does not know; "
            "run a sink at least as new as the one that migrated it"
        )
    for version, checksum in applied.items():
        mig = known[version]
        if checksum != mig.checksum:
            raise MigrationError(
                f"{mig.filename} was changed after it was applied (checksum {checksum[:12]}… "
                f"in schema_migrations, {mig.checksum[:12]}… on disk); put changes in a new "
                "migration instead"
            )
