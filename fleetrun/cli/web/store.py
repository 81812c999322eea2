"""What the console reads from the sink's PostgreSQL: requests, a request's results, a host's.

Every query has a deadline (the pool's command timeout); results come back as the contract's
records through the CLI's own reader (query.result_from_row), so both front ends read alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson

from fleetrun.cli.query import result_from_row
from fleetrun.cli.web.settings import WebSettings
from schemas import Result

# A request page groups at most this many hosts' results (a group's output is shown once, but
# every row is read to group it); beyond it the page says so and `fleetrun results` has all.
MAX_RESULTS_READ: Final = 5000
STATES: Final = ("accepted", "completed", "rejected", "unknown")


@dataclass(frozen=True, slots=True)
class Filters:
    """What the request list is narrowed to; None means any."""

    principal: str | None = None
    label: tuple[str, str] | None = None  # key=value
    state: str | None = None  # one of STATES; "unknown": results stored, no status yet
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RequestPage:
    """One request's summary row and its final results (at most MAX_RESULTS_READ)."""

    summary: Mapping[str, Any]
    results: list[Result]
    more: bool  # results beyond MAX_RESULTS_READ were not read


class Store:
    """A small asyncpg pool over the sink's views."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        s = self.settings
        self._pool = await asyncpg.create_pool(
            s.pg_dsn.get_secret_value(),
            min_size=0,
            max_size=s.pg_pool_max_size,
            timeout=s.pg_timeout_s,
            command_timeout=s.pg_timeout_s,
            server_settings={"application_name": "fleetrun-web"},
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await pool.close()
            except Exception:
                pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("Store.open() first")
        return self._pool

    async def requests(self, filters: Filters, limit: int) -> list[dict[str, Any]]:
        """The newest requests first, narrowed by `filters`."""
        where, args = _where(filters)
        args.append(limit)
        sql = (
            "SELECT * FROM request_summary"  # noqa: S608 (fixed column names; values are $n)
            f"{where} ORDER BY submitted_at DESC NULLS LAST LIMIT ${len(args)}"
        )
        return [_decoded(r) for r in await self.pool.fetch(sql, *args)]

    async def request(self, request_id: str) -> RequestPage | None:
        """A request's summary and results; None when PostgreSQL has no trace of it."""
        rid = uuid.UUID(request_id)
        async with self.pool.acquire() as conn:
            # to_jsonb(q) reads columns a later migration adds (cancelled_by) without failing
            # on a database that does not have them yet.
            summary = await conn.fetchrow(
                "SELECT s.*, q.duration_ms, q.collector, "
                "to_jsonb(q) ->> 'cancelled_by' AS cancelled_by, "
                "to_jsonb(q) ->> 'cancel_reason' AS cancel_reason, "
                # the audit of the admission (migration 0006)
                "to_jsonb(q) ->> 'key_fingerprint' AS key_fingerprint, "
                "(to_jsonb(q) ->> 'verified')::boolean AS verified, "
                "to_jsonb(q) ->> 'policy_rule' AS policy_rule, "
                "to_jsonb(q) ->> 'template' AS template, "
                "to_jsonb(q) ->> 'params' AS params "
                "FROM request_summary AS s JOIN requests AS q USING (request_id) "
                "WHERE s.request_id = $1",
                rid,
            )
            if summary is None:
                return None
            rows = await conn.fetch(
                "SELECT * FROM final_results WHERE request_id = $1 ORDER BY host LIMIT $2",
                rid,
                MAX_RESULTS_READ + 1,
            )
        results = [result_from_row(r) for r in rows[:MAX_RESULTS_READ]]
        return RequestPage(_decoded(summary), results, more=len(rows) > MAX_RESULTS_READ)

    async def host(self, host: str, limit: int) -> list[tuple[Result, str | None]]:
        """A host's latest results across requests, newest first, with each request's command."""
        rows = await self.pool.fetch(
            "SELECT r.*, q.command AS request_command FROM results AS r "
            "LEFT JOIN requests AS q USING (request_id) "
            "WHERE r.host = $1 ORDER BY r.finished_at DESC, r.attempt DESC LIMIT $2",
            host,
            limit,
        )
        return [(result_from_row(r), r["request_command"]) for r in rows]

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")


def _decoded(row: asyncpg.Record) -> dict[str, Any]:
    """A row as a dict, its jsonb labels as a mapping (asyncpg hands jsonb over as text)."""
    out = dict(row)
    labels = out.get("labels")
    out["labels"] = orjson.loads(labels) if isinstance(labels, str) else dict(labels or {})
    return out


def _where(filters: Filters) -> tuple[str, list[object]]:
    clauses: list[str] = []
    args: list[object] = []

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.principal:
        clauses.append(f"principal = {arg(filters.principal)}")
    if filters.label is not None:
        key, value = filters.label
        clauses.append(f"labels @> {arg(orjson.dumps({key: value}).decode())}::jsonb")
    if filters.state == "unknown":
        clauses.append("state IS NULL")
    elif filters.state:
        clauses.append(f"state = {arg(filters.state)}")
    if filters.since is not None:
        clauses.append(f"submitted_at >= {arg(filters.since)}")
    if filters.until is not None:
        clauses.append(f"submitted_at < {arg(filters.until)}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
