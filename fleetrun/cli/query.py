"""`fleetrun results | status | requests`: what the sink stored in PostgreSQL."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from fleetrun.cli.errors import (
    EXIT_HOSTS_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
    local_stack_hint,
)
from fleetrun.cli.grouping import group_results, render_groups, summary_line
from fleetrun.cli.safetext import csv_cell, shown
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime.settings import mask
from schemas import RESULT_STATUSES, ErrorInfo, Result, encode, format_timestamp

CSV_COLUMNS = (
    "request_id",
    "host",
    "port",
    "user",
    "attempt",
    "status",
    "exit_status",
    "exit_signal",
    "stdout",
    "stderr",
    "stdout_bytes",
    "stderr_bytes",
    "stdout_truncated",
    "stderr_truncated",
    "started_at",
    "finished_at",
    "duration_ms",
    "error",
)


def parse_request_id(text: str) -> str:
    """A canonical lowercase UUID, or a CliError saying what a request id looks like."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise CliError(f"{text!r} is not a request id (a UUID printed by `fleetrun run`)") from None


async def _connect(settings: CliSettings) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            settings.pg_dsn.get_secret_value(), timeout=settings.pg_timeout_s
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        dsn = mask(settings.pg_dsn, secret=True)
        raise CliError(
            f"cannot reach PostgreSQL at {dsn} ({exc or type(exc).__name__}); is it running? "
            "(`make stack-up`, or set FLEETRUN_PG_DSN)" + local_stack_hint(),
            EXIT_UNAVAILABLE,
        ) from None


async def _fetch(settings: CliSettings, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await _connect(settings)
    try:
        return await conn.fetch(sql, *args, timeout=settings.pg_timeout_s)
    except asyncpg.UndefinedTableError:
        raise CliError(
            "the fleetrun tables do not exist in this database yet; run `fleetrun migrate`",
            EXIT_UNAVAILABLE,
        ) from None
    finally:
        await conn.close(timeout=settings.pg_timeout_s)


def result_from_row(row: asyncpg.Record | Mapping[str, Any]) -> Result:
    """A stored row back into the contract's record (output bytes decoded exactly)."""
    error = None
    if row["error_type"] is not None:
        error = ErrorInfo(type=row["error_type"], message=row["error_message"] or "")
    labels = row["labels"]
    return Result(
        request_id=str(row["request_id"]),
        host=row["host"],
        port=row["port"],
        user=row["ssh_user"],
        attempt=row["attempt"],
        status=row["status"],
        exit_status=row["exit_status"],
        exit_signal=row["exit_signal"],
        stdout=row["stdout"],
        stderr=row["stderr"],
        stdout_encoding=row["stdout_encoding"],
        stderr_encoding=row["stderr_encoding"],
        stdout_bytes=row["stdout_bytes"],
        stderr_bytes=row["stderr_bytes"],
        stdout_truncated=row["stdout_truncated"],
        stderr_truncated=row["stderr_truncated"],
        stdout_sha256=row["stdout_sha256"],
        stderr_sha256=row["stderr_sha256"],
        started_at=format_timestamp(row["started_at"]),
        finished_at=format_timestamp(row["finished_at"]),
        duration_ms=row["duration_ms"],
        error=error,
        collector=row["collector"],
        labels=orjson.loads(labels) if isinstance(labels, str) else dict(labels or {}),
    )


async def fetch_results(settings: CliSettings, request_id: str, host: str | None) -> list[Result]:
    """The final result of every host of a request (optionally one host), by host name."""
    sql = "SELECT * FROM final_results WHERE request_id = $1"
    args: list[object] = [uuid.UUID(request_id)]
    if host is not None:
        sql += " AND host = $2"
        args.append(host)
    rows = await _fetch(settings, sql + " ORDER BY host", *args)
    return [result_from_row(r) for r in rows]


def render_csv(results: Sequence[Result], *, raw: bool = False) -> str:
    """One CSV row per host; output columns hold text (undecodable bytes replaced, controls
    escaped unless `raw`); no text cell can start a spreadsheet formula."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow(
            _csv_row(
                [
                    r.request_id,
                    r.host,
                    r.port,
                    r.user,
                    r.attempt,
                    r.status,
                    "" if r.exit_status is None else r.exit_status,
                    r.exit_signal or "",
                    r.stdout_data.decode("utf-8", "replace"),
                    r.stderr_data.decode("utf-8", "replace"),
                    r.stdout_bytes,
                    r.stderr_bytes,
                    _csv_bool(r.stdout_truncated),
                    _csv_bool(r.stderr_truncated),
                    r.started_at,
                    r.finished_at,
                    r.duration_ms,
                    f"{r.error.type}: {r.error.message}" if r.error else "",
                ],
                raw,
            )
        )
    return out.getvalue()


def _csv_row(cells: list[object], raw: bool) -> list[object]:
    # Numbers and booleans are ours; every text cell may hold what a host or a requester wrote.
    return [csv_cell(c if raw else shown(c)) if isinstance(c, str) else c for c in cells]


def _csv_bool(value: bool) -> str:
    # What PostgreSQL's COPY, spreadsheets and pandas read as booleans; Python's True is none.
    return "true" if value else "false"


async def show_results(
    settings: CliSettings, request_id: str, *, fmt: str, host: str | None, raw: bool = False
) -> tuple[str, int]:
    """The stored results of a request in `fmt` (text, json or csv), and the exit code; `raw`
    leaves control characters in the hosts' output (json is exact either way)."""
    results = await fetch_results(settings, request_id, host)
    if not results:
        where = f" for host {host}" if host else ""
        raise CliError(
            f"no results stored for request {request_id}{where} (yet); "
            f"`fleetrun status {request_id}` shows whether it ran",
            EXIT_NOT_FOUND,
        )
    code = EXIT_OK if all(r.status == "ok" for r in results) else EXIT_HOSTS_FAILED
    if fmt == "json":
        return "\n".join(encode(r).decode() for r in results), code
    if fmt == "csv":
        return render_csv(results, raw=raw).rstrip("\n"), code
    return render_groups(group_results(results), raw=raw) + "\n" + summary_line(results), code


# Who signed and which rule decided (sink migration 0006).
_AUDIT = "q.key_fingerprint, q.verified, q.policy_rule, q.template, q.params"


async def show_status(settings: CliSettings, request_id: str) -> str:
    """The request's state, who asked what, and its counts per status."""
    counted = ", ".join(f"q.count_{s}" for s in RESULT_STATUSES)
    rows = await _fetch(
        settings,
        f"SELECT s.*, q.duration_ms, {counted}, {_AUDIT} FROM request_summary AS s "  # noqa: S608 (column names only)
        "LEFT JOIN requests AS q USING (request_id) WHERE s.request_id = $1",
        uuid.UUID(request_id),
    )
    if not rows:
        raise CliError(
            f"request {request_id} is not in PostgreSQL (yet): the sink stores it once a "
            "collector accepts it",
            EXIT_NOT_FOUND,
        )
    return render_status(request_id, rows[0])


def render_status(request_id: str, row: asyncpg.Record | Mapping[str, Any]) -> str:
    """`fleetrun status` text from a request_summary row plus the completed status's counts.

    `hosts` counts the stored results. Once completed, the collector's own counts are the
    request's outcome; when the stored results do not add up to them (still on their way to
    the sink, dead-lettered, or two endpoints reported under one host name, which the stored
    views show as one host), a `counted` line says what the collector counted.
    """
    counts = ", ".join(f"{row[s]} {s}" for s in RESULT_STATUSES if row[s])
    reported = row["hosts_reported"] or 0
    if row["targets_total"] is None:
        hosts = f"{reported} reported (how many targets: not known until a collector accepts it)"
    else:
        hosts = f"{reported}/{row['targets_total']} reported"
    lines = [
        f"request   {request_id}",
        f"state     {row['state'] or 'unknown (results only)'}",
        f"command   {_or_unknown(row['command'])}",
        f"targets   {' '.join(row['targets'] or []) or 'unknown'}",
        f"principal {_or_unknown(row['principal'])}",
        f"submitted {_or_unknown(row['submitted_at'])}",
        f"hosts     {hosts}" + (f": {counts}" if counts else ""),
    ]
    counted = {s: row.get(f"count_{s}") for s in RESULT_STATUSES}
    if row["state"] == "completed" and all(n is not None for n in counted.values()):
        stored = {s: row[s] for s in RESULT_STATUSES}
        if counted != stored:
            text = ", ".join(f"{n} {s}" for s, n in counted.items() if n) or "no hosts"
            lines.append(
                f"counted   {text} (by the collector; stored results differ: still on their "
                "way, dead-lettered, or one host name for two endpoints)"
            )
    if row["reject_reason"]:
        lines.append(f"rejected  {row['reject_reason']}")
    lines += _audit_lines(row)
    if row.get("cancelled_by"):
        reason = row.get("cancel_reason")
        lines.append(f"cancelled by {row['cancelled_by']}" + (f": {reason}" if reason else ""))
    duration = _duration_s(row)
    if duration is not None:
        lines.append(f"duration  {duration:.3f} s")
    return shown("\n".join(lines))  # commands, reasons and principals are anyone's text


def _audit_lines(row: asyncpg.Record | Mapping[str, Any]) -> list[str]:
    """Signed by which key, the policy rule that decided, the template asked for."""
    lines = []
    if row.get("verified") is not None:
        key = row.get("key_fingerprint")
        if row["verified"]:
            lines.append(f"signed    by key {key} (verified)")
        else:
            lines.append(f"signed    no (unverified{f': claims key {key}' if key else ''})")
    if row.get("policy_rule"):
        lines.append(f"policy    rule {row['policy_rule']}")
    if row.get("template"):
        params = row.get("params")
        values = orjson.loads(params) if isinstance(params, str) else params or {}
        shown_params = " ".join(f"{k}={v}" for k, v in values.items())
        lines.append(f"template  {row['template']} {shown_params}".rstrip())
    return lines


def _duration_s(row: asyncpg.Record | Mapping[str, Any]) -> float | None:
    """The collector's duration from its completed status when stored, else first start to
    last finish of the stored results (a request still running, or without its status)."""
    duration_ms = row.get("duration_ms")
    if duration_ms is not None:
        return float(duration_ms) / 1000
    if row["duration"] is not None:
        return float(row["duration"].total_seconds())
    return None


def _or_unknown(value: object) -> str:
    return "unknown" if value is None else str(value)


async def show_requests(settings: CliSettings, limit: int) -> str:
    """The most recent requests with their counts, newest first."""
    rows = await _fetch(
        settings,
        "SELECT * FROM request_summary ORDER BY submitted_at DESC NULLS LAST LIMIT $1",
        limit,
    )
    if not rows:
        return "no requests stored yet"
    return render_requests(rows)


def render_requests(rows: Sequence[asyncpg.Record | Mapping[str, Any]]) -> str:
    """`fleetrun requests` text: hosts are `reported/targets`, or `reported` alone while the
    number of targets is not known (no accepted status stored yet)."""
    lines = [f"{'request_id':36}  {'submitted':19}  {'state':9}  {'hosts':>7}  not-ok  command"]
    for r in rows:
        submitted = r["submitted_at"].strftime("%Y-%m-%d %H:%M:%S") if r["submitted_at"] else "-"
        not_ok = sum(r[s] or 0 for s in RESULT_STATUSES if s != "ok")
        reported = r["hosts_reported"] or 0
        total = r["targets_total"]
        hosts = str(reported) if total is None else f"{reported}/{total}"
        command = (r["command"] or "").replace("\n", " ")[:60]
        lines.append(
            f"{r['request_id']!s:36}  {submitted:19}  {r['state'] or 'unknown':9}  {hosts:>7}  "
            f"{not_ok:6}  {command}"
        )
    return shown("\n".join(lines))
