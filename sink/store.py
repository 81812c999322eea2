"""PostgreSQL adapter: one flush is one transaction.

Results: binary COPY straight into `results`, the common case. A redelivered result (a
restart, a rebalance, a rewind) makes that COPY fail on the idempotency key; the flush is then
redone through a per-connection temporary staging table and INSERT … SELECT … ON CONFLICT DO
NOTHING, and later flushes take that path until one finds no duplicates. (The staging path
costs the database more than the direct COPY: every row is written twice and goes through the
executor; bench/REPORT.md has both rates.) Status records: one staged row each, merged per request
and upserted in one SQL statement. Records the database
refuses are isolated by splitting (sink/isolate.py, savepoints) and stored in dead_letters in
the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from schemas import ConsumedRecord, DeadLetter, ErrorInfo
from sink.errors import describe, is_poison
from sink.isolate import isolate
from sink.partitions import MaintenanceReport, Partitions
from sink.rows import (
    COUNT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    FINISHED_AT_INDEX,
    REQUEST_COLUMNS,
    RESULT_COLUMNS,
    dead_letter,
    dead_letter_row,
)
from sink.settings import SinkSettings

log = logging.getLogger("fleetrun.sink.store")

Conn = asyncpg.Connection | PoolConnectionProxy
STAGE_RESULTS: Final = "sink_stage_results"
STAGE_REQUESTS: Final = "sink_stage_requests"


def _cols(columns: Sequence[str]) -> str:
    return ", ".join(columns)


# Staging tables live as long as their connection; ON COMMIT DELETE ROWS empties them after
# each flush. Built from the real tables so their column types can never drift.
_STAGING: Final = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_RESULTS} ON COMMIT DELETE ROWS AS
    SELECT {_cols(RESULT_COLUMNS)} FROM results WITH NO DATA;
CREATE TEMP TABLE IF NOT EXISTS {STAGE_REQUESTS} ON COMMIT DELETE ROWS AS
    SELECT {_cols(REQUEST_COLUMNS)} FROM requests WITH NO DATA;
"""  # noqa: S608 (every identifier in these statements is a constant of this module)
# The bare requests rows let request_summary be read from `requests` (see migration 0003); the
# status upsert fills them in. Sorted, so concurrent flushes lock requests rows in the same order.
_INSERT_REQUEST_IDS: Final = """
INSERT INTO requests (request_id)
SELECT id FROM unnest($1::uuid[]) AS id ORDER BY id
ON CONFLICT (request_id) DO NOTHING
"""
_INSERT_STAGED_RESULTS: Final = f"""
INSERT INTO results ({_cols(RESULT_COLUMNS)})
SELECT {_cols(RESULT_COLUMNS)} FROM {STAGE_RESULTS}
ON CONFLICT (request_id, host, attempt, finished_at) DO NOTHING
"""  # noqa: S608
# Status records of one request may arrive in any order, more than once, and in one flush or
# across many: this is the one place that merges them. Within a flush, details from whichever
# status had them, the earliest accept or reject, and the latest completion (ties broken by
# content, so the order of arrival never matters); against the stored row, the same rules.
_DETAILS: Final = (
    "principal",
    "command",
    "targets",
    "reject_reason",
    "collector",
    "cancelled_by",
    "cancel_reason",
    "key_fingerprint",
    "policy_rule",
    "template",
)
_EARLIEST: Final = ("submitted_at", "accepted_at", "rejected_at", "first_status_at")
_COMPLETION_FIELDS: Final = ("duration_ms", *COUNT_COLUMNS)
_MERGED_STATUSES: Final = f"""
WITH details AS (
    SELECT request_id,
        {", ".join(f"max({c}) AS {c}" for c in _DETAILS)},
        (array_agg(labels) FILTER (WHERE labels IS NOT NULL))[1] AS labels,  -- jsonb has no max
        (array_agg(params) FILTER (WHERE params IS NOT NULL))[1] AS params,
        bool_or(verified) AS verified,
        {", ".join(f"min({c}) AS {c}" for c in _EARLIEST)},
        max(last_status_at) AS last_status_at,
        max(targets_total) AS targets_total
    FROM {STAGE_REQUESTS} GROUP BY request_id
), completion AS (
    SELECT DISTINCT ON (request_id)
        request_id, completed_at, targets_total, {_cols(_COMPLETION_FIELDS)}
    FROM {STAGE_REQUESTS} WHERE completed_at IS NOT NULL
    ORDER BY request_id, completed_at DESC,
        {", ".join(f"{c} DESC NULLS LAST" for c in _COMPLETION_FIELDS)}
)
SELECT d.request_id, d.principal, d.command, d.targets, d.labels, d.submitted_at,
    d.accepted_at, d.rejected_at, d.reject_reason, c.completed_at,
    coalesce(c.targets_total, d.targets_total),
    {", ".join(f"c.{col}" for col in _COMPLETION_FIELDS)},
    d.collector, d.cancelled_by, d.cancel_reason, d.first_status_at, d.last_status_at,
    d.key_fingerprint, d.verified, d.policy_rule, d.template, d.params
FROM details d LEFT JOIN completion c USING (request_id)
ORDER BY d.request_id
"""  # noqa: S608
# The in-flush rules again: the later completion, ties broken by the same content; a detail's
# greatest value (stored values are not preferred, or the row would depend on flush order).
_NEWER = (
    f"(r.completed_at IS NULL OR (excluded.completed_at, "
    f"{', '.join(f'excluded.{c}' for c in _COMPLETION_FIELDS)}) > "
    f"(r.completed_at, {', '.join(f'r.{c}' for c in _COMPLETION_FIELDS)}))"
)
_UPSERT_REQUESTS: Final = f"""
INSERT INTO requests AS r ({_cols(REQUEST_COLUMNS)})
{_MERGED_STATUSES}
ON CONFLICT (request_id) DO UPDATE SET
    {", ".join(f"{c} = greatest(r.{c}, excluded.{c})" for c in _DETAILS)},
    labels = coalesce(r.labels, excluded.labels),
    params = coalesce(r.params, excluded.params),
    verified = greatest(r.verified, excluded.verified),
    submitted_at = least(r.submitted_at, excluded.submitted_at),
    accepted_at = least(r.accepted_at, excluded.accepted_at),
    rejected_at = least(r.rejected_at, excluded.rejected_at),
    completed_at = greatest(r.completed_at, excluded.completed_at),
    {", ".join(f"{c} = CASE WHEN {_NEWER} THEN excluded.{c} ELSE r.{c} END" for c in _COMPLETION_FIELDS)},
    targets_total = CASE WHEN {_NEWER}
        THEN coalesce(excluded.targets_total, r.targets_total)
        ELSE coalesce(r.targets_total, excluded.targets_total) END,
    first_status_at = least(r.first_status_at, excluded.first_status_at),
    last_status_at = greatest(r.last_status_at, excluded.last_status_at),
    updated_at = now()
"""  # noqa: E501
_PLACEHOLDERS: Final = ", ".join(f"${i}" for i in range(1, len(DEAD_LETTER_COLUMNS) + 1))
_INSERT_DEAD: Final = f"""
INSERT INTO dead_letters ({_cols(DEAD_LETTER_COLUMNS)}) VALUES ({_PLACEHOLDERS})
ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
"""  # noqa: S608


class _Way(enum.Enum):
    """How a flush writes its results (the value is WriteOutcome.path)."""

    DIRECT = "direct"  # COPY into results
    STAGED = "staged"  # COPY into staging, INSERT … ON CONFLICT DO NOTHING
    SPLIT = "split"  # staged, in savepoints, split until the refused records are found


ResultItem = tuple[tuple[Any, ...], ConsumedRecord]  # (results row, where it came from)
RequestItem = tuple[tuple[Any, ...], ConsumedRecord]  # (one status's requests row, its record)


@dataclass(slots=True)
class WriteBatch:
    """What one flush stores: results rows, status rows, and known dead letters."""

    results: list[ResultItem] = field(default_factory=list)
    requests: list[RequestItem] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class WriteOutcome:
    """What the flush stored; `dead` are all dead letters (for the DLQ topic)."""

    results_inserted: int = 0
    results_duplicate: int = 0
    requests_upserted: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    rejected: int = 0  # records the database refused (part of `dead`)
    path: str = "none"  # how the results were written: direct, staged, split; none: no results


class ResultStore(Protocol):
    """What a flush writes through (Store; a scripted fake in unit tests)."""

    async def write(self, batch: WriteBatch) -> WriteOutcome: ...


class Store:
    """The sink's connection pool and its one write operation."""

    def __init__(self, settings: SinkSettings, partitions: Partitions) -> None:
        self.settings = settings
        self.partitions = partitions
        self.timeout_s = settings.pg_statement_timeout_s
        self._pool: asyncpg.Pool | None = None
        # Partition DDL logs in as the schema owner when one is configured (pg_owner_user): the
        # pool's user is the writer, which may not create or drop tables.
        self._owner_pool: asyncpg.Pool | None = None
        # A sink that starts may replay what its predecessor stored but had not committed.
        self._duplicates_expected = True

    async def open(self) -> None:
        """Create the pool; connection errors propagate (the caller retries)."""
        s = self.settings
        self._pool = await asyncpg.create_pool(
            s.pg_dsn.get_secret_value(),
            min_size=min(s.pg_pool_min_size, s.pg_pool_max_size),
            max_size=s.pg_pool_max_size,
            timeout=s.pg_connect_timeout_s,
            command_timeout=s.pg_statement_timeout_s,
            init=_init_connection,
            # Nothing session-level is ever changed on these connections (SET LOCAL and
            # transaction-level locks only), so the default reset query would be a wasted
            # round trip per flush; asyncpg still rolls back an unfinished transaction.
            reset=_no_reset,
            # JIT would compile the INSERT … SELECT from an unanalysed temp table on every
            # flush: tens of ms for nothing.
            server_settings={"application_name": f"fleetrun-sink {s.name}"[:63], "jit": "off"},
        )

        owner, password = s.owner_login()
        if owner is not None:
            self._owner_pool = await asyncpg.create_pool(
                s.pg_dsn.get_secret_value(),
                min_size=0,
                max_size=1,
                timeout=s.pg_connect_timeout_s,
                command_timeout=s.pg_statement_timeout_s,
                server_settings={"application_name": f"fleetrun-sink {s.name} ddl"[:63]},
                user=owner,
                password=password,
            )

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("Store.open() first")
        return self._pool

    async def close(self, timeout_s: float) -> None:
        """Close the pool gracefully within `timeout_s`, then forcibly."""
        for pool in (self._owner_pool, self._pool):
            if pool is None:
                continue
            try:
                async with asyncio.timeout(timeout_s):
                    await pool.close()
            except TimeoutError:
                log.warning("pool did not close in time; terminating connections")
                pool.terminate()
        self._pool = self._owner_pool = None

    async def maintain_partitions(self) -> MaintenanceReport:
        """One partition maintenance round on a pooled connection."""
        pool = self._owner_pool or self.pool
        async with pool.acquire(timeout=self.settings.pg_connect_timeout_s) as conn:
            return await self.partitions.maintain(conn)

    def _window_hint(self) -> str:
        s = self.settings
        kept = f"the last {s.retention_days} days" if s.retention_days else "any past time"
        return (
            f"finished_at is outside the time the results table keeps ({kept} up to "
            f"{s.partition_ahead_days} days ahead)"
        )

    async def write(self, batch: WriteBatch) -> WriteOutcome:
        """Store a batch in one transaction; isolate and dead-letter what the database refuses."""
        async with self.pool.acquire(timeout=self.settings.pg_connect_timeout_s) as conn:
            if batch.results:
                times = [row[FINISHED_AT_INDEX] for row, _ in batch.results]
                lo, hi = min(times), max(times)
                if self._owner_pool is None:
                    await self.partitions.ensure(conn, lo, hi)
                elif not self.partitions.covers(lo, hi):
                    timeout = self.settings.pg_connect_timeout_s
                    async with self._owner_pool.acquire(timeout=timeout) as owner:
                        await self.partitions.ensure(owner, lo, hi)
            way = _Way.STAGED if self._duplicates_expected else _Way.DIRECT
            while True:
                try:
                    # The common case, in as few round trips as possible: BEGIN, the request
                    # ids, COPY, COMMIT. The event loop is busy decoding the next records, so
                    # every round trip waits for a turn; fewer of them keep the database busy.
                    async with conn.transaction():
                        out = await self._write(conn, batch, way)
                    break
                except Exception as exc:
                    way = self._next_way(way, exc)
            if batch.results and way is not _Way.DIRECT:
                self._duplicates_expected = out.results_duplicate > 0
            return out

    def _next_way(self, way: _Way, exc: Exception) -> _Way:
        """How to redo a flush that failed `way`, or raise `exc` when redoing cannot help."""
        if way is _Way.DIRECT and isinstance(exc, asyncpg.UniqueViolationError):
            if not self._duplicates_expected:
                log.info("redelivered results: storing through staging until a batch has none")
            self._duplicates_expected = True
            return _Way.STAGED
        if way is _Way.SPLIT or not is_poison(exc):
            raise exc
        log.info(
            "batch refused, splitting it to find the bad records", extra={"reason": describe(exc)}
        )
        return _Way.SPLIT

    async def _write(self, conn: Conn, batch: WriteBatch, way: _Way) -> WriteOutcome:
        split = way is _Way.SPLIT
        stage = _Staging(conn, self.timeout_s, savepoints=split)
        refused: list[tuple[ResultItem, BaseException]] = []
        refused_requests: list[tuple[RequestItem, BaseException]] = []
        if split:
            refused = await isolate(batch.results, stage.results, is_poison)
            refused_requests = await isolate(batch.requests, stage.requests, is_poison)
        else:
            if batch.results:
                await stage.results(batch.results, direct=way is _Way.DIRECT)
            if batch.requests:
                await stage.requests(batch.requests)
        out = WriteOutcome(
            path=way.value if batch.results else "none",
            results_inserted=stage.inserted,
            results_duplicate=len(batch.results) - len(refused) - stage.inserted,
            requests_upserted=stage.upserted,
            dead=list(batch.dead),
        )
        hint = self._window_hint()
        instance = self.settings.name
        for (_, record), exc in refused:
            out.dead.append(_refused(record, exc, instance, hint))
        for (_, record), exc in refused_requests:
            out.dead.append(_refused(record, exc, instance, hint))
        out.rejected = len(out.dead) - len(batch.dead)
        if out.dead:
            rows = [dead_letter_row(d) for d in out.dead]
            await conn.executemany(_INSERT_DEAD, rows, timeout=self.timeout_s)
        return out


def _refused(record: ConsumedRecord, exc: BaseException, instance: str, hint: str) -> DeadLetter:
    reason = f"the database refused the record: {describe(exc)}"
    if "no partition of relation" in reason:
        reason += f"; {hint}"
    log.warning(
        "record refused by the database",
        extra={"topic": record.topic, "partition": record.partition, "offset": record.offset,
               "reason": reason},
    )  # fmt: skip
    return dead_letter(record, ErrorInfo.bounded(type(exc).__name__, reason), instance=instance)


class _Staging:
    """Stages and inserts rows; with `savepoints`, each call is atomic on its own (for
    isolate(), which retries parts of a batch inside one transaction)."""

    def __init__(self, conn: Conn, timeout_s: float, *, savepoints: bool) -> None:
        self.conn = conn
        self.timeout_s = timeout_s
        self.savepoints = savepoints
        self.inserted = 0
        self.upserted = 0
        # A successful attempt leaves rows in a staging table until the transaction commits;
        # a later attempt in the same transaction (splitting) must clear them first.
        self._dirty: set[str] = set()

    async def _stage(self, table: str, rows: list[tuple[Any, ...]], columns: Sequence[str]) -> None:
        if table in self._dirty:
            await self.conn.execute(f"TRUNCATE {table}", timeout=self.timeout_s)
        await self.conn.copy_records_to_table(
            table, records=rows, columns=list(columns), timeout=self.timeout_s
        )

    async def results(self, items: Sequence[ResultItem], *, direct: bool = False) -> None:
        """Store results rows through staging + ON CONFLICT, or with `direct` by COPY straight
        into `results` (UniqueViolationError if one is stored already)."""
        rows = [row for row, _ in items]
        async with self._atomic():
            ids = list({row[0] for row in rows})
            await self.conn.execute(_INSERT_REQUEST_IDS, ids, timeout=self.timeout_s)
            if direct:
                await self.conn.copy_records_to_table(
                    "results", records=rows, columns=list(RESULT_COLUMNS), timeout=self.timeout_s
                )
                inserted = len(rows)
            else:
                await self._stage(STAGE_RESULTS, rows, RESULT_COLUMNS)
                status = await self.conn.execute(_INSERT_STAGED_RESULTS, timeout=self.timeout_s)
                inserted = _count(status)
        if not direct:
            self._dirty.add(STAGE_RESULTS)
        self.inserted += inserted

    async def requests(self, items: Sequence[RequestItem]) -> None:
        async with self._atomic():
            await self._stage(STAGE_REQUESTS, [row for row, _ in items], REQUEST_COLUMNS)
            status = await self.conn.execute(_UPSERT_REQUESTS, timeout=self.timeout_s)
        self._dirty.add(STAGE_REQUESTS)
        self.upserted += _count(status)

    def _atomic(self) -> AbstractAsyncContextManager[object]:
        return self.conn.transaction() if self.savepoints else contextlib.nullcontext()


def _count(status: str) -> int:
    # "INSERT 0 <rows>"
    return int(status.rsplit(" ", 1)[-1])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute(_STAGING)
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=_timestamptz_out,
        decoder=_timestamptz_in,
        format="tuple",
    )


# timestamptz on the wire is microseconds since 2000-01-01 UTC. asyncpg's own encoder compares
# every value with ±infinity and converts it to UTC before subtracting the epoch: two values
# per results row, a large share of the COPY's client CPU in the profile. The sink only ever
# writes aware datetimes (validated records, datetime.now(UTC)); a naive one is refused.
_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_PG_INFINITY: Final = 2**63 - 1


def _timestamptz_out(value: datetime) -> tuple[int]:
    # A naive datetime (or a date) raises TypeError here: asyncpg refuses the statement.
    return ((value - _PG_EPOCH) // _MICROSECOND,)


def _timestamptz_in(value: tuple[int]) -> datetime:
    # As asyncpg decodes: ±infinity as datetime.max / datetime.min, else aware UTC.
    (microseconds,) = value
    if microseconds == _PG_INFINITY:
        return datetime.max
    if microseconds == -_PG_INFINITY - 1:
        return datetime.min
    return _PG_EPOCH + timedelta(microseconds=microseconds)


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None
