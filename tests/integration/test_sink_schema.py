"""Migrations (twice, concurrently, edited) and partition retention on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from sink.errors import MigrationError
from sink.migrate import load_migrations, migrate, pending
from sink.partitions import Partitions
from sink.settings import SinkSettings
from tests.support.sink import ROOT, fetch

VERSIONS = [m.version for m in load_migrations()]


async def _migrate_process(dsn: str, log: Path) -> int:
    env = {**os.environ, "FLEETRUN_PG_DSN": dsn}
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetrun", "migrate", cwd=ROOT, env=env, stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(120):
            return await proc.wait()


async def test_migrations_from_two_processes_at_once_then_again(
    pg_dsn: str, tmp_path: Path
) -> None:
    log = tmp_path / "migrate.log"
    codes = await asyncio.gather(*(_migrate_process(pg_dsn, log) for _ in range(2)))
    assert codes == [0, 0], log.read_text()
    assert await _migrate_process(pg_dsn, log) == 0, log.read_text()
    rows = await fetch(pg_dsn, "SELECT version, checksum FROM schema_migrations ORDER BY 1")
    assert [r[0] for r in rows] == VERSIONS
    assert [r[1] for r in rows] == [m.checksum for m in load_migrations()]
    text = log.read_text()
    assert text.count("applying migration") == len(VERSIONS)  # each applied by one process
    tables = await fetch(
        pg_dsn,
        "SELECT relname FROM pg_class WHERE relname IN "
        "('requests', 'results', 'dead_letters', 'request_summary', 'host_latest_result', "
        "'request_output_groups', 'final_results')",
    )
    assert len(tables) == 7
    # Partitions from today to the default 7 days ahead.
    for ahead in range(8):
        name = f"results_p{datetime.now(UTC) + timedelta(days=ahead):%Y%m%d}"
        assert (await fetch(pg_dsn, "SELECT to_regclass($1)::text", name))[0][0] == name


async def test_an_edited_migration_is_detected(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        assert (await migrate(conn)).applied == tuple(VERSIONS)
        assert (await migrate(conn)).applied == ()
        assert await pending(conn) == []
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(
            MigrationError, match=r"0001_tables\.sql was changed after it was applied"
        ):
            await migrate(conn)
        await conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x')")
        await conn.execute(
            "UPDATE schema_migrations SET checksum = $1 WHERE version = 1",
            load_migrations()[0].checksum,
        )
        with pytest.raises(MigrationError, match=r"schema version\(s\) \[99\]"):
            await pending(conn)
    finally:
        await conn.close(timeout=10)


async def _insert(conn: asyncpg.Connection, host: str, finished_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO results (request_id, host, attempt, finished_at, port, ssh_user, "
        "status, stdout, stdout_encoding, stderr, stderr_encoding, stdout_bytes, "
        "stderr_bytes, stdout_truncated, stderr_truncated, stdout_sha256, "
        "stderr_sha256, started_at, duration_ms, collector, kafka_partition, "
        "kafka_offset) VALUES (gen_random_uuid(), $1, 1, $2, 22, 'u', 'ok', '', "
        "'utf-8', '', 'utf-8', 0, 0, false, false, 'x', 'x', $2, 0, 'c', 0, 0)",
        host,
        finished_at,
    )


async def test_retention_drops_old_partitions_and_keeps_newer_ones(pg_dsn: str) -> None:
    settings = SinkSettings(pg_dsn=SecretStr(pg_dsn), retention_days=30, partition_ahead_days=2)
    parts = Partitions(settings)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        await migrate(conn)
        # Partitions made by a sink that ran 40 and 20 days ago.
        for age in (40, 20):
            await parts.maintain(conn, now=now - timedelta(days=age))
        for age in (40, 20):
            await _insert(conn, f"age{age}", now - timedelta(days=age))
        await conn.execute(
            "INSERT INTO dead_letters (source_topic, source_partition, source_offset, "
            "error_type, error_message, stage, instance, dead_at) VALUES "
            "('t', 0, 1, 'E', 'old', 'sink', 's', $1), ('t', 0, 2, 'E', 'new', 'sink', 's', $2)",
            now - timedelta(days=91),
            now,
        )
        report = await parts.maintain(conn, now=now)
        await _insert(conn, "age0", now)
    finally:
        await conn.close(timeout=10)
    horizon = now - timedelta(days=30)
    assert report.dropped  # the partitions of 40 days ago (and their neighbours) went
    assert all(name < f"results_p{horizon:%Y%m%d}" for name in report.dropped)
    assert f"results_p{now - timedelta(days=40):%Y%m%d}" in report.dropped
    assert report.dead_letters_deleted == 1
    hosts = {r[0] for r in await fetch(pg_dsn, "SELECT host FROM results")}
    assert hosts == {"age20", "age0"}
    left = await fetch(
        pg_dsn,
        "SELECT min(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'results'::regclass",
    )
    assert left[0][0] == f"results_p{now - timedelta(days=20):%Y%m%d}"
    assert (await fetch(pg_dsn, "SELECT error_message FROM dead_letters"))[0][0] == "new"
