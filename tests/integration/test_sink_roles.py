"""Least privilege in PostgreSQL (sink/migrations/0005_roles.sql) on the stack's real server: the
schema belongs to fleetrun_owner, the sink's writer has DML and no DDL, the reader only reads,
later tables are covered, and a sink that writes as the writer still stores everything."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import pytest

from sink.migrate import act_as_owner, migrate
from stack.env import StackEnv
from tests.support.kafka import Topics
from tests.support.sink import MakeSink, fetch, produce_results, results_for, wait_for_rows

TABLES = ("requests", "results", "dead_letters", "schema_migrations")
VIEWS = ("final_results", "request_summary", "host_latest_result", "request_output_groups")


def _login(dsn: str) -> tuple[str, str]:
    parts = urlsplit(dsn)
    assert parts.username is not None
    assert parts.password is not None
    return parts.username, parts.password


async def _connect(pg_dsn: str, login_dsn: str) -> asyncpg.Connection:
    """The test's database, as the user of `login_dsn`."""
    user, password = _login(login_dsn)
    return await asyncpg.connect(pg_dsn, user=user, password=password, timeout=10)


@pytest.fixture
async def migrated(pg_dsn: str) -> str:
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        await migrate(conn)
    finally:
        await conn.close(timeout=10)
    return pg_dsn


async def test_the_schema_belongs_to_the_owner_role(migrated: str) -> None:
    rows = await fetch(
        migrated,
        "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class AS c "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')",
    )
    owners = {row["relname"]: row["owner"] for row in rows}
    assert set(TABLES + VIEWS) <= set(owners)
    assert set(owners.values()) == {"fleetrun_owner"}, owners  # partitions too


async def test_the_writer_writes_but_cannot_create_drop_or_alter(
    migrated: str, stack_env: StackEnv
) -> None:
    conn = await _connect(migrated, stack_env.pg_writer_dsn)
    try:
        for ddl in (
            "CREATE TABLE sneaky (x int)",
            "DROP TABLE results",
            "DROP VIEW request_summary",
            "ALTER TABLE requests ADD COLUMN sneaky int",
            "TRUNCATE dead_letters",
            "INSERT INTO schema_migrations VALUES (99, 'x', 'x')",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(ddl, timeout=10)
        # DML on its tables, and a TEMP staging table (what the sink's staged path uses).
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO dead_letters (dead_at, stage, instance, source_topic, "
                "source_partition, source_offset, error_type, error_message) "
                "VALUES (now(), 'sink', 't', 't', 0, 0, 'e', 'm')",
                timeout=10,
            )
            assert await conn.fetchval("SELECT count(*) FROM dead_letters", timeout=10) == 1
            await conn.execute("DELETE FROM dead_letters", timeout=10)
            await conn.execute("CREATE TEMP TABLE staging (x int) ON COMMIT DROP", timeout=10)
    finally:
        await conn.close(timeout=10)


async def test_the_reader_reads_tables_and_views_and_writes_nothing(
    migrated: str, stack_env: StackEnv
) -> None:
    conn = await _connect(migrated, stack_env.pg_reader_dsn)
    try:
        for name in TABLES + VIEWS:
            await conn.fetch(f"SELECT * FROM {name} LIMIT 1", timeout=10)  # noqa: S608
        for sql in (
            "INSERT INTO dead_letters (dead_at, stage, instance, source_topic, source_partition, "
            "source_offset, error_type, error_message) VALUES (now(), 'sink', 't', 't', 0, 0, "
            "'e', 'm')",
            "UPDATE requests SET principal = 'x'",
            "DELETE FROM results",
            "CREATE TABLE sneaky (x int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql, timeout=10)
    finally:
        await conn.close(timeout=10)


async def test_a_table_a_later_migration_adds_is_granted_by_default(
    migrated: str, stack_env: StackEnv
) -> None:
    # As sink/migrate.py runs 0006 …: the owner login, acting as the owner role.
    owner = await asyncpg.connect(migrated, timeout=10)
    try:
        async with owner.transaction():
            await act_as_owner(owner, "schema_migrations", 10)
            await owner.execute("CREATE TABLE audit_later (x int)", timeout=10)
    finally:
        await owner.close(timeout=10)
    writer = await _connect(migrated, stack_env.pg_writer_dsn)
    reader = await _connect(migrated, stack_env.pg_reader_dsn)
    try:
        await writer.execute("INSERT INTO audit_later VALUES (1)", timeout=10)
        assert await reader.fetchval("SELECT x FROM audit_later", timeout=10) == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("INSERT INTO audit_later VALUES (2)", timeout=10)
    finally:
        await writer.close(timeout=10)
        await reader.close(timeout=10)


async def test_a_sink_writing_as_the_writer_migrates_as_the_owner_and_stores_everything(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    writer_user, writer_password = _login(stack_env.pg_writer_dsn)
    owner_user, owner_password = _login(stack_env.pg_dsn)
    parts = urlsplit(pg_dsn)
    as_writer = parts._replace(
        netloc=f"{writer_user}:{writer_password}@{parts.hostname}:{parts.port}"
    ).geturl()
    sink = sinks(pg_dsn=as_writer, pg_owner_user=owner_user, pg_owner_password=owner_password)
    await sink.start()  # a fresh database: migrations 1-5 run at start, as the owner
    results = results_for(200, hosts_per_request=10)
    await produce_results(topics.bootstrap, topics["results"], results)
    assert await wait_for_rows(pg_dsn, len(results), timeout_s=60) == len(results)
    # Who the sink logged in as: its pool (which wrote the rows) as the writer, partition DDL
    # as the owner (the writer could not have created the partitions the rows went into).
    logins = await fetch(
        pg_dsn,
        "SELECT DISTINCT usename, application_name LIKE '% ddl' AS ddl FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'fleetrun-sink %'",
    )
    assert {(row["usename"], row["ddl"]) for row in logins} <= {
        (writer_user, False),
        (owner_user, True),
    }
    assert (writer_user, False) in {(row["usename"], row["ddl"]) for row in logins}
    await sink.stop()
    owners = await fetch(
        pg_dsn,
        "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_inherits AS i "
        "JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = 'results'::regclass",
    )
    assert [row["owner"] for row in owners] == ["fleetrun_owner"]  # partitions made as owner
