"""The codec's behaviour, table by table: timestamps, schema ids, peeking, encode-side checks."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

import schemas
from schemas import ErrorInfo, Request, Result, SchemaError, Status, StatusCounts

RID = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REQUEST = Request(
    request_id=RID, submitted_at=T0, principal="alice", command="uname -r", targets=("web[01-03]",)
)
RESULT = Result(
    request_id=RID,
    host="web01",
    port=22,
    user="deploy",
    status="ok",
    exit_status=0,
    stdout=b"5.15.0\n",
    stdout_bytes=7,
    started_at=T0,
    finished_at=T0 + timedelta(milliseconds=150),
    duration_ms=150,
    collector="c1",
)


def _request_doc(**changes: Any) -> bytes:
    doc = schemas.as_document(REQUEST)
    doc.update(changes)
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.5Z", datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T06:30:00-05:30", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00-00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ],
)
def test_timestamps_are_read_as_utc_microseconds(wire: str, expected: datetime) -> None:
    request = schemas.decode_request(_request_doc(submitted_at=wire))
    assert request.submitted_at == expected
    assert request.submitted_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("wire", "problem"),
    [
        ("2024-05-01 12:00:00Z", "RFC 3339"),
        ("2024-05-01T12:00:00", "RFC 3339"),
        ("2024-05-01T12:00Z", "RFC 3339"),
        ("20240501T120000Z", "RFC 3339"),
        ("2024-05-01T12:00:00.1234567890Z", "RFC 3339"),
        ("2024-05-01T12:00:60Z", "RFC 3339"),
        ("2024-05-01T12:00:00Z\n", "RFC 3339"),
        ("２０２４-05-01T12:00:00Z", "RFC 3339"),
        ("2023-02-29T12:00:00Z", "not a real date"),
        ("0000-01-01T00:00:00Z", "not a real date"),
        ("0001-01-01T00:00:00+01:00", "out of range once converted to UTC"),
    ],
)
def test_bad_timestamps_are_refused(wire: str, problem: str) -> None:
    with pytest.raises(SchemaError, match=problem) as caught:
        schemas.decode_request(_request_doc(submitted_at=wire))
    assert caught.value.path == "submitted_at"


def test_encoding_writes_utc_with_z_and_keeps_microseconds() -> None:
    local = datetime(2024, 5, 1, 14, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    doc = schemas.as_document(replace(REQUEST, submitted_at=local))
    assert doc["submitted_at"] == "2024-05-01T12:00:00.000001Z"


def test_encoding_refuses_naive_datetimes() -> None:
    with pytest.raises(SchemaError, match="naive datetime") as caught:
        schemas.encode(replace(REQUEST, submitted_at=datetime(2024, 5, 1)))
    assert caught.value.path == "submitted_at"


@pytest.mark.parametrize(
    ("record", "path", "problem"),
    [
        (replace(REQUEST, command=""), "command", "must not be empty"),
        (replace(REQUEST, targets=("web[1-",)), "targets[0]", "never closed"),
        (replace(REQUEST, env={"lower": "x"}), "env.lower", "environment variable name"),
        (replace(REQUEST, expires_at=T0), "expires_at", "after submitted_at"),
        (replace(RESULT, stdout="text"), "stdout", "must be bytes"),  # type: ignore[arg-type]
        (replace(RESULT, exit_status=1), "exit_status", 'must be 0 when status is "ok"'),
        (replace(RESULT, status="error", exit_status=None), "error", "must say what went wrong"),
        (replace(RESULT, stdout_bytes=3), "stdout", "holds 7 bytes but stdout_bytes says"),
        (replace(RESULT, stdout_truncated=True), "stdout_truncated", "must be false"),
    ],
)
def test_encode_refuses_what_decode_would_refuse(
    record: schemas.Message, path: str, problem: str
) -> None:
    with pytest.raises(SchemaError, match=problem) as caught:
        schemas.encode(record)
    assert caught.value.path == path


def test_encode_without_validation_writes_what_it_is_given() -> None:
    raw = schemas.encode(replace(REQUEST, command=""), validate=False)
    with pytest.raises(SchemaError, match="command: must not be empty"):
        schemas.decode_request(raw)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, "has no value"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"NaN", "not valid JSON"),
        (b"[]", "must be a JSON object, not an array"),
        (b'"x"', "must be a JSON object, not a string"),
        (b"{}", "schema: is required"),
        (b'{"schema": 1}', 'schema: must be a string such as "fleetrun.result/1", not a number'),
        (b'{"schema": "fleetrun.result/2"}', "unsupported schema version"),
        (b'{"schema": "fleetrun.result/1.1"}', "is not a fleetrun schema id"),
        (b'{"schema": "fleetrun.status/1"}', "wrong topic"),
    ],
)
def test_undecodable_input_gives_one_clear_error(raw: bytes | None, problem: str) -> None:
    with pytest.raises(SchemaError, match=problem):
        schemas.decode_result(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (schemas.encode(RESULT), RID),
        (b'{"schema": "fleetrun.request/9", "request_id": "%s", "junk": [' % RID.encode(), None),
        (b'{"schema": "fleetrun.request/9", "request_id": "%s"}' % RID.encode(), RID),
        (b'{"request_id": "%s"}' % RID.upper().encode(), None),
        (b'{"request_id": 5}', None),
        (b"[1]", None),
        (None, None),
    ],
)
def test_peek_request_id_reads_invalid_messages_when_it_can(
    raw: bytes | None, expected: str | None
) -> None:
    assert schemas.peek_request_id(raw) == expected


def test_peek_schema_and_generic_decode() -> None:
    for record in (
        REQUEST,
        RESULT,
        Status.completed(RID, StatusCounts(ok=1), duration_ms=5, collector="c"),
    ):
        raw = schemas.encode(record)
        assert schemas.peek_schema(raw) == type(record).SCHEMA
        assert schemas.decode(raw) == record
    assert schemas.peek_schema(b"nope") is None
    with pytest.raises(SchemaError, match="is not a fleetrun schema id"):
        schemas.decode(b'{"schema": "other.thing/1"}')
    with pytest.raises(SchemaError, match="unsupported schema version"):
        schemas.decode(b'{"schema": "fleetrun.result/2"}')


def test_unknown_fields_are_ignored_and_not_kept() -> None:
    doc = schemas.as_document(RESULT)
    doc["added_in_1_7"] = {"anything": [1, 2]}
    result = schemas.decode_result(orjson.dumps(doc))
    assert result == RESULT
    assert "added_in_1_7" not in schemas.as_document(result)


def test_integral_floats_become_ints() -> None:
    doc = schemas.as_document(RESULT)
    doc["port"] = 22.0
    result = schemas.decode_result(orjson.dumps(doc))
    assert type(result.port) is int


def test_request_defaults_apply_when_fields_are_absent() -> None:
    minimal: dict[str, object] = {
        "schema": "fleetrun.request/1",
        "request_id": RID,
        "submitted_at": "2024-05-01T12:00:00Z",
    }
    minimal |= {"principal": "a", "command": "true", "targets": ["h"]}
    request = schemas.decode_request(orjson.dumps(minimal))
    assert request == Request(
        request_id=RID, submitted_at=T0, principal="a", command="true", targets=("h",)
    )
    assert (request.timeout_s, request.max_output_bytes, request.max_errors) == (60.0, 65_536, None)


@pytest.mark.parametrize(
    ("max_errors", "targets_total", "budget"),
    [
        (None, 100, None),
        (0, 100, 0),
        (5, 100, 5),
        ("10%", 100, 10),
        ("10%", 15, 1),
        ("0%", 50, 0),
        ("100%", 7, 7),
    ],
)
def test_error_budget(max_errors: int | str | None, targets_total: int, budget: int | None) -> None:
    assert replace(REQUEST, max_errors=max_errors).error_budget(targets_total) == budget


def test_status_constructors_fill_each_state() -> None:
    accepted = Status.accepted(REQUEST, targets_total=3, collector="c", at=T0)
    assert (accepted.command, accepted.targets, accepted.targets_total) == (
        "uname -r",
        ("web[01-03]",),
        3,
    )
    rejected = Status.rejected(RID, "bad\x00" + "x" * 5000, collector="c")
    assert len(rejected.reason or "") == 4096
    assert "\x00" not in (rejected.reason or "")
    counts = StatusCounts.of(["ok", "ok", "failed", "skipped"])
    completed = Status.completed(RID, counts, duration_ms=10, collector="c")
    assert completed.targets_total == 4
    assert counts.as_dict()["ok"] == 2
    for status in (accepted, rejected, completed):
        assert schemas.decode_status(schemas.encode(status)) == status


def test_error_info_from_exception_fits_the_contract() -> None:
    info = ErrorInfo.from_exception(ConnectionRefusedError("refused\x00" + "y" * 9000))
    assert info.type == "ConnectionRefusedError"
    assert len(info.message) == 4096
    assert "\x00" not in info.message
    schemas.encode(replace(RESULT, status="error", exit_status=None, error=info))


def test_schema_error_is_picklable_and_not_retriable() -> None:
    error = SchemaError("targets[3]", "'@web' is not a group in the inventory", "targets")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301  # our own bytes
    assert (copy.path, copy.problem, copy.rule, str(copy)) == (
        error.path,
        error.problem,
        error.rule,
        str(error),
    )
    assert SchemaError.retriable is False


@dataclass(frozen=True)
class _Consumed:
    topic: str = "fleetrun.requests"
    partition: int = 3
    offset: int = 41
    timestamp: int = 1_714_564_800_000
    key: bytes | None = b"k\x00"
    value: bytes | None = b"\xff not json"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [(1_714_564_800_000, T0), (0, datetime(1970, 1, 1, tzinfo=UTC)), (-1, None)],
)
def test_dead_letter_of_a_consumed_record_keeps_it_byte_for_byte(
    timestamp: int, expected: datetime | None
) -> None:
    record = _Consumed(timestamp=timestamp)
    error = ErrorInfo(type="SchemaError", message="not JSON")
    letter = schemas.DeadLetter.of(
        record, error, stage="sink", instance="x" * 1000, request_id=None, at=T0
    )
    assert (letter.source_topic, letter.partition, letter.offset) == ("fleetrun.requests", 3, 41)
    assert (letter.key, letter.value, letter.error) == (b"k\x00", b"\xff not json", error)
    assert letter.source_timestamp == expected
    assert len(letter.instance) == schemas.limits.MAX_INSTANCE_CHARS
    assert schemas.decode_dead_letter(schemas.encode(letter)) == letter
