"""Wire records → rows: output round-trips, status merging in any order, columns match SQL."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import ErrorInfo, Request, Result, Status, StatusCounts, decode_output, strategies
from sink.rows import (
    DEAD_LETTER_COLUMNS,
    REQUEST_COLUMNS,
    RESULT_COLUMNS,
    RequestRow,
    dead_letter,
    dead_letter_row,
    merge_statuses,
    result_row,
)

MIGRATIONS = Path(__file__).parents[2] / "sink" / "migrations"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _col(row: tuple[object, ...], name: str) -> object:
    return row[RESULT_COLUMNS.index(name)]


@settings(max_examples=200, deadline=None)
@given(result=strategies.results(output=st.binary(max_size=400)))
def test_result_rows_keep_every_field_and_output_round_trips(result: Result) -> None:
    row = result_row(result, partition=3, offset=77)
    assert len(row) == len(RESULT_COLUMNS)
    for stream in ("stdout", "stderr"):
        text, encoding = _col(row, stream), _col(row, f"{stream}_encoding")
        assert isinstance(text, str)
        assert "\x00" not in text  # PostgreSQL text cannot hold NUL
        assert decode_output(text, encoding) == getattr(result, stream)  # type: ignore[arg-type]
    assert _col(row, "ssh_user") == result.user
    assert _col(row, "finished_at") == result.finished_at
    assert (_col(row, "kafka_partition"), _col(row, "kafka_offset")) == (3, 77)
    assert (_col(row, "error_type") is None) == (result.error is None)


def _statuses(request: Request, counts: StatusCounts) -> list[Status]:
    accepted = Status.accepted(request, targets_total=counts.total, collector="c-1", at=T0)
    completed = Status.completed(
        request.request_id, counts, duration_ms=900, collector="c-1", at=T0 + timedelta(seconds=1)
    )
    return [accepted, completed, completed]  # the completed status delivered twice


@settings(max_examples=100, deadline=None)
@given(request=strategies.requests(), counts=strategies.status_counts)
def test_statuses_merge_to_the_same_row_in_any_order(
    request: Request, counts: StatusCounts
) -> None:
    statuses = _statuses(request, counts)
    rows = {merge_statuses(order)[request.request_id] for order in itertools.permutations(statuses)}
    assert len(rows) == 1
    (row,) = rows
    assert (row.accepted_at, row.completed_at) == (T0, T0 + timedelta(seconds=1))
    assert row.counts == tuple(counts.as_dict().values())
    assert (row.principal, row.command, row.targets) == (
        request.principal,
        request.command,
        request.targets,
    )
    assert row.first_status_at == T0
    assert len(row.as_tuple()) == len(REQUEST_COLUMNS)


def test_the_latest_completion_wins_and_the_earliest_acceptance() -> None:
    rid = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"
    early = Status.completed(rid, StatusCounts(ok=1), duration_ms=5, collector="a", at=T0)
    late = Status.completed(
        rid, StatusCounts(failed=1), duration_ms=9, collector="b", at=T0 + timedelta(1)
    )
    for order in ([early, late], [late, early]):
        row = merge_statuses(order)[rid]
        assert (row.completed_at, row.duration_ms, row.counts) == (
            late.at,
            9,
            tuple(StatusCounts(failed=1).as_dict().values()),
        )


def test_rejected_requests_keep_their_reason() -> None:
    rid = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"
    row = RequestRow.of(Status.rejected(rid, "unknown group @web", collector="c", at=T0))
    assert (row.rejected_at, row.reject_reason, row.accepted_at) == (T0, "unknown group @web", None)
    with pytest.raises(ValueError, match="different requests"):
        row.merge(RequestRow.of(Status.rejected(rid.replace("0b", "0c"), "x", collector="c")))


class _Record:
    topic = "fleetrun.results"
    partition = 4
    offset = 99
    timestamp = 1_700_000_000_123
    key = b"k"
    value = b'{"request_id": "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10", "oops": 1}'


def test_dead_letters_keep_the_bytes_and_where_they_came_from() -> None:
    d = dead_letter(
        _Record(), ErrorInfo.bounded("SchemaError", "bad\x00" + "x" * 5000), instance="s-1"
    )
    assert (d.source_topic, d.partition, d.offset, d.key, d.value) == (
        "fleetrun.results",
        4,
        99,
        b"k",
        _Record.value,
    )
    assert d.request_id == "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"
    assert d.source_timestamp == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert "\x00" not in d.error.message
    assert len(d.error.message) == 4096
    assert len(dead_letter_row(d)) == len(DEAD_LETTER_COLUMNS)


def _table_columns(table: str) -> set[str]:
    sql = (MIGRATIONS / "0001_tables.sql").read_text()
    body = re.search(rf"CREATE TABLE {table} \((.*?)\n\)", sql, re.S)
    assert body, table
    names = re.findall(r"^    ([a-z_0-9]+)\s", body.group(1), re.M)
    return {n for n in names if n not in ("constraint",)}


@pytest.mark.parametrize(
    ("table", "columns", "database_only"),
    [
        ("results", RESULT_COLUMNS, {"stored_at"}),
        ("requests", REQUEST_COLUMNS, {"state", "updated_at"}),
        ("dead_letters", DEAD_LETTER_COLUMNS, {"id", "stored_at"}),
    ],
)
def test_row_columns_match_the_migration(
    table: str, columns: tuple[str, ...], database_only: set[str]
) -> None:
    declared = _table_columns(table) - {"CONSTRAINT"}
    assert set(columns) == declared - database_only
