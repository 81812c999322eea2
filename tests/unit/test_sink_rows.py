"""Wire records → rows: output round-trips, one requests row per status, columns match SQL.

The statuses of a request are merged in SQL, by the store; tests/integration/test_sink_store.py
checks that merge on a real PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    REQUEST_ID_REUSED,
    RESULT_STATUSES,
    Audit,
    ErrorInfo,
    Result,
    Status,
    decode_output,
    encode,
    format_timestamp,
    known,
    parse_timestamp,
    strategies,
)
from sink.rows import (
    COUNT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    REQUEST_COLUMNS,
    RESULT_COLUMNS,
    dead_letter,
    dead_letter_row,
    decode_result_record,
    request_row,
    result_row,
)
from tests.support.fakes import FakeRecord
from tests.support.records import RID, make_counts, make_request

MIGRATIONS = Path(__file__).parents[2] / "sink" / "migrations"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
AT = format_timestamp(T0)


def _col(row: tuple[object, ...], name: str) -> object:
    return row[RESULT_COLUMNS.index(name)]


def _req(row: tuple[object, ...], name: str) -> object:
    return row[REQUEST_COLUMNS.index(name)]


@settings(max_examples=200, deadline=None)
@given(result=strategies.results(output=st.binary(max_size=400)))
def test_result_rows_keep_every_field_and_output_round_trips(result: Result) -> None:
    row = result_row(result, partition=3, offset=77)
    assert len(row) == len(RESULT_COLUMNS)
    for stream in ("stdout", "stderr"):
        text, encoding = _col(row, stream), _col(row, f"{stream}_encoding")
        assert isinstance(text, str)
        assert encoding in ("utf-8", "base64")
        assert "\x00" not in text  # PostgreSQL text cannot hold NUL
        assert decode_output(text, encoding) == getattr(result, f"{stream}_data")
    assert _col(row, "ssh_user") == result.user
    # Timestamps become aware datetimes for asyncpg: the same instants as the record's text.
    assert _col(row, "finished_at") == parse_timestamp(result.finished_at)
    assert _col(row, "started_at") == parse_timestamp(result.started_at)
    assert (_col(row, "kafka_partition"), _col(row, "kafka_offset")) == (3, 77)
    assert (_col(row, "error_type") is None) == (result.error is None)
    labels = _col(row, "labels")
    assert isinstance(labels, str)
    assert orjson.loads(labels) == result.labels
    assert decode_result_record(encode(result), 3, 77) == row


@settings(max_examples=100, deadline=None)
@given(status=strategies.statuses())
def test_each_status_is_one_requests_row_saying_only_what_it_carries(status: Status) -> None:
    row = request_row(status)
    assert len(row) == len(REQUEST_COLUMNS)
    at = parse_timestamp(status.at)
    assert _req(row, "request_id") == status.request_id
    assert _req(row, "first_status_at") == _req(row, "last_status_at") == at
    for state in ("accepted", "rejected", "completed"):
        assert _req(row, f"{state}_at") == (at if status.state == state else None)
    assert _req(row, "principal") == known(status.principal)
    assert _req(row, "reject_reason") == known(status.reason)
    assert _req(row, "targets_total") == known(status.targets_total)
    counts = known(status.counts)
    expected = (None,) * 9 if counts is None else tuple(counts.as_dict().values())
    assert tuple(_req(row, c) for c in COUNT_COLUMNS) == expected


def test_an_accepted_status_row_has_the_request_details() -> None:
    request = make_request(targets=["web[1-3]", "!web2"], labels={"team": "ops"}, submitted_at=T0)
    row = request_row(
        Status.accepted(request, targets_total=2, collector="c-1", at=format_timestamp(T0))
    )
    assert dict(zip(REQUEST_COLUMNS, row, strict=True)) == {
        "request_id": RID,
        "principal": "alice",
        "command": "uname -r",
        "targets": ["web[1-3]", "!web2"],
        "labels": '{"team":"ops"}',
        "submitted_at": T0,
        "accepted_at": T0,
        "rejected_at": None,
        "reject_reason": None,
        "completed_at": None,
        "targets_total": 2,
        "duration_ms": None,
        **dict.fromkeys(COUNT_COLUMNS),
        "collector": "c-1",
        "cancelled_by": None,
        "cancel_reason": None,
        "first_status_at": T0,
        "last_status_at": T0,
        **dict.fromkeys(("key_fingerprint", "verified", "policy_rule", "template", "params")),
    }


def test_an_audited_rejected_status_row_says_who_tried_what_and_why() -> None:
    request = make_request(submitted_at=T0)
    request = msgspec.structs.replace(
        request, command=msgspec.UNSET, template="restart_service", params={"name": "x; y"}
    )
    audit = Audit(key_fingerprint="SHA256:abc", verified=True, policy_rule="ops-demo")
    status = Status.rejected(
        RID, "denied", collector="c-1", request=request, audit=audit, at=format_timestamp(T0)
    )
    row = dict(zip(REQUEST_COLUMNS, request_row(status), strict=True))
    assert (row["rejected_at"], row["reject_reason"], row["principal"]) == (T0, "denied", "alice")
    assert row["key_fingerprint"] == "SHA256:abc"
    assert row["verified"] is True
    assert row["policy_rule"] == "ops-demo"
    assert row["template"] == "restart_service"
    assert row["params"] == '{"name":"x; y"}'
    assert row["command"] is None


def test_a_completed_status_row_has_the_counts_and_nothing_of_the_request() -> None:
    later = T0 + timedelta(seconds=3)
    counts = make_counts(ok=4, failed=1)
    status = Status.completed(
        RID, counts, duration_ms=900, collector="c-2", at=format_timestamp(later)
    )
    row = dict(zip(REQUEST_COLUMNS, request_row(status), strict=True))
    assert (row["completed_at"], row["duration_ms"], row["targets_total"]) == (later, 900, 5)
    assert {c: row[c] for c in COUNT_COLUMNS} == {
        f"count_{s}": (4 if s == "ok" else 1 if s == "failed" else 0) for s in RESULT_STATUSES
    }
    details = ("principal", "command", "targets", "labels", "submitted_at", "reject_reason")
    assert {c: row[c] for c in details} == dict.fromkeys(details)
    assert (row["accepted_at"], row["rejected_at"]) == (None, None)


def test_a_rejected_status_row_keeps_its_reason() -> None:
    row = request_row(Status.rejected(RID, "unknown group @web", collector="c", at=AT))
    assert (_req(row, "rejected_at"), _req(row, "reject_reason"), _req(row, "accepted_at")) == (
        T0,
        "unknown group @web",
        None,
    )
    assert _req(row, "principal") is None  # the request could not be read


def test_a_rejection_of_a_reused_request_id_leaves_the_request_row_alone() -> None:
    # About a second record with the same id: every column but the id is NULL, which the
    # merge in SQL treats as "nothing new" (least/greatest/coalesce skip NULLs).
    reason = f"{REQUEST_ID_REUSED}: {RID} already names another request"
    row = request_row(Status.rejected(RID, reason, collector="c", at=AT))
    assert row == (RID, *(None,) * (len(row) - 1))


def test_dead_letters_keep_the_bytes_and_where_they_came_from() -> None:
    record = FakeRecord(
        value=b'{"request_id": "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10", "oops": 1}',
        key=b"k",
        topic="fleetrun.results",
        partition=4,
        offset=99,
        timestamp=1_700_000_000_123,
    )
    d = dead_letter(
        record, ErrorInfo.bounded("SchemaError", "bad\x00" + "x" * 5000), instance="s-1"
    )
    assert (d.source_topic, d.partition, d.offset, d.key, d.value) == (
        "fleetrun.results",
        4,
        99,
        b"k",
        record.value,
    )
    assert d.request_id == RID
    source_time = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert d.source_timestamp == format_timestamp(source_time)
    assert "\x00" not in d.error.message
    assert len(d.error.message) == 4096
    row = dict(zip(DEAD_LETTER_COLUMNS, dead_letter_row(d), strict=True))
    assert (row["source_timestamp"], row["dead_at"]) == (source_time, parse_timestamp(d.at))
    assert (row["request_id"], row["value"], row["stage"]) == (RID, record.value, "sink")


def _table_columns(table: str) -> set[str]:
    """The columns a table has after every migration: created in 0001, added by later ones."""
    sql = (MIGRATIONS / "0001_tables.sql").read_text()
    body = re.search(rf"CREATE TABLE {table} \((.*?)\n\)", sql, re.S)
    assert body, table
    names = re.findall(r"^    ([a-z_0-9]+)\s", body.group(1), re.M)
    for later in sorted(MIGRATIONS.glob("0*.sql"))[1:]:
        for alter in re.findall(rf"ALTER TABLE {table}\b(.*?);", later.read_text(), re.S):
            names += re.findall(r"ADD COLUMN ([a-z_0-9]+)", alter)
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
