"""The codec's behaviour, table by table: the wire form kept, schema ids, peeking, encode-side
checks, integers, unknown fields, defaults, status states, dead letters."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest

import schemas
from schemas import (
    DeadLetter,
    ErrorInfo,
    Request,
    Result,
    SchemaError,
    Status,
    StatusCounts,
    known,
    parse_timestamp,
)

RID = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"
T0 = "2024-05-01T12:00:00Z"
REQUEST = Request(
    request_id=RID, submitted_at=T0, principal="alice", command="uname -r", targets=("web[01-03]",)
)
RESULT = Result(
    request_id=RID,
    host="web01",
    port=22,
    user="deploy",
    attempt=1,
    status="ok",
    exit_status=0,
    exit_signal=None,
    stdout="5.15.0\n",
    stderr="",
    stdout_encoding="utf-8",
    stderr_encoding="utf-8",
    stdout_bytes=7,
    stderr_bytes=0,
    stdout_truncated=False,
    stderr_truncated=False,
    stdout_sha256="1" * 64,
    stderr_sha256=schemas.EMPTY_SHA256,
    started_at=T0,
    finished_at="2024-05-01T12:00:00.150000Z",
    duration_ms=150,
    error=None,
    collector="c1",
    labels={},
)
replace = msgspec.structs.replace


def _request_doc(**changes: Any) -> bytes:
    return orjson.dumps(schemas.as_document(REQUEST) | changes)


def _result_doc(**changes: Any) -> bytes:
    return orjson.dumps(schemas.as_document(RESULT) | changes)


@pytest.mark.parametrize(
    ("wire", "utc"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T06:30:00-05:30", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00-00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ],
)
def test_timestamps_are_kept_as_written_and_read_as_utc(wire: str, utc: datetime) -> None:
    raw = _request_doc(submitted_at=wire)
    request = schemas.decode_request(raw)
    assert request.submitted_at == wire  # the record holds the wire text
    assert parse_timestamp(request.submitted_at) == utc
    assert schemas.encode(request) == schemas.encode(
        schemas.decode_request(schemas.encode(request))
    )
    assert schemas.as_document(request)["submitted_at"] == wire


@pytest.mark.parametrize(
    ("wire", "rule", "problem"),
    [
        ("2024-05-01 12:00:00Z", "pattern", "RFC 3339"),
        ("2024-05-01T12:00:00", "pattern", "RFC 3339"),
        ("2024-05-01T12:00:00z", "pattern", "RFC 3339"),
        ("2024-05-01T12:00:00+0200", "pattern", "RFC 3339"),
        ("2024-05-01T12:00:00.1234567890Z", "pattern", "RFC 3339"),
        ("2024-05-01T12:00:60Z", "pattern", "RFC 3339"),
        ("2024-05-01T12:00:00Z\n", "pattern", "RFC 3339"),
        ("２０２４-05-01T12:00:00Z", "pattern", "RFC 3339"),
        ("2023-02-29T12:00:00Z", "date-time", "not a real date"),
        ("0000-01-01T00:00:00Z", "date-time", "not a real date"),
        ("0001-01-01T00:00:00+01:00", "date-time", "out of range once converted to UTC"),
    ],
)
def test_bad_timestamps_are_refused(wire: str, rule: str, problem: str) -> None:
    with pytest.raises(SchemaError, match=problem) as caught:
        schemas.decode_request(_request_doc(submitted_at=wire))
    assert (caught.value.path, caught.value.rule) == ("submitted_at", rule)


def test_output_is_text_plus_its_encoding() -> None:
    text, encoding = schemas.encode_output(b"\xff\x00binary")
    result = replace(
        RESULT, stdout=text, stdout_encoding=encoding, stdout_bytes=8, stdout_truncated=False
    )
    decoded = schemas.decode_result(schemas.encode(result))
    assert (decoded.stdout, decoded.stdout_encoding) == ("/wBiaW5hcnk=", "base64")
    assert decoded.stdout_data == b"\xff\x00binary"
    assert decoded.stderr_data == b""
    assert RESULT.stdout_data == b"5.15.0\n"


@pytest.mark.parametrize(
    ("changes", "path", "problem"),
    [
        ({"targets": ("web[1-",)}, "targets[0]", "never closed"),
        ({"env": {"lower": "x"}}, "env.lower", "environment variable name"),
        ({"expires_at": T0}, "expires_at", "after submitted_at"),
        ({"command": "   "}, "command", "is blank"),
        ({"submitted_at": "2024-05-01T12:00:00z"}, "submitted_at", "RFC 3339"),
    ],
)
def test_records_built_in_code_follow_the_rules(
    changes: dict[str, Any], path: str, problem: str
) -> None:
    # Patterns and the extra rules run in __post_init__, whoever builds the record.
    with pytest.raises(SchemaError, match=problem) as caught:
        replace(REQUEST, **changes)
    assert caught.value.path == path


@pytest.mark.parametrize(
    ("record", "path", "problem"),
    [
        (replace(REQUEST, command="x" * 16_385), "command", "the limit is 16,384"),
        (replace(REQUEST, concurrency=0), "concurrency", "is 0; must be at least 1"),
        (replace(REQUEST, targets=()), "targets", "must not be empty"),
        (replace(RESULT, port=70_000), "port", "is 70,000; must be at most 65,535"),
        (replace(RESULT, user=""), "user", "must not be empty"),
    ],
)
def test_encode_refuses_the_bounds_decode_would_refuse(
    record: schemas.Message, path: str, problem: str
) -> None:
    # msgspec checks Meta bounds while decoding only: encode proves them by decoding.
    with pytest.raises(SchemaError, match=problem) as caught:
        schemas.encode(record)
    assert caught.value.path == path


def test_encode_without_validation_writes_what_it_is_given() -> None:
    raw = schemas.encode(replace(REQUEST, concurrency=0), validate=False)
    with pytest.raises(SchemaError, match="concurrency: is 0; must be at least 1"):
        schemas.decode_request(raw)


def test_an_unpaired_surrogate_is_refused_not_crashed_on() -> None:
    # Text decoded with surrogateescape (argv, file names) can reach a record built in code;
    # UTF-8 JSON cannot carry it.
    record = replace(REQUEST, labels={"team": "web\udcff"})
    for write in (schemas.encode, schemas.as_document):
        with pytest.raises(SchemaError, match="unpaired surrogate") as caught:
            write(record)
        assert (caught.value.path, caught.value.rule) == ("labels.team", "json")
    # And a str handed to a decoder (RawMessage allows it) holding one is not JSON.
    text = schemas.encode(REQUEST).decode().replace("alice", "al\udcffice")
    for decode in (schemas.decode_request, schemas.decode):
        with pytest.raises(SchemaError, match="not valid JSON") as caught:
            decode(text)
        assert caught.value.rule == "json"


def test_error_texts_are_made_to_fit_the_contract() -> None:
    # A message built from a file name decoded with surrogateescape holds the surrogate itself.
    name = b"/srv/\xff\x00".decode(errors="surrogateescape")
    info = ErrorInfo.from_exception(RuntimeError(f"cannot read {name}"))
    assert info.message == "cannot read /srv/\\udcff\\0"
    schemas.encode(replace(RESULT, status="error", exit_status=None, error=info))
    long = ErrorInfo.from_exception(ConnectionRefusedError("refused\x00" + "y" * 9000))
    assert long.type == "ConnectionRefusedError"
    assert len(long.message) == 4096
    assert long.message.endswith("…")
    assert "\x00" not in long.message
    rejected = Status.rejected(RID, "bad\udcff\x00" + "x" * 5000, collector="c", at=T0)
    assert len(known(rejected.reason) or "") == 4096
    schemas.encode(rejected)


@pytest.mark.parametrize(
    ("raw", "rule", "problem"),
    [
        (None, "json", "has no value"),
        (b"", "json", "not valid JSON"),
        (b"\xff\xfe", "json", "not valid JSON"),
        (b"NaN", "json", "not valid JSON"),
        (b'{"schema": "fleetrun.result/1", "user": "\\ud800"}', "json", "not valid JSON"),
        (b"[]", "type", "must be a JSON object, not an array"),
        (b'"x"', "type", "must be a JSON object, not a string"),
        (b"{}", "schema", "schema: is required"),
        (b'{"schema": null}', "schema", 'must be a string such as "fleetrun.result/1", not null'),
        (b'{"schema": 1}', "schema", 'must be a string such as "fleetrun.result/1", not a number'),
        (b'{"schema": "fleetrun.result/2"}', "schema-version", "unsupported schema version"),
        (b'{"schema": "fleetrun.result/1.1"}', "schema", "is not a fleetrun schema id"),
        (b'{"schema": "fleetrun.status/1"}', "schema", "wrong topic"),
    ],
)
def test_undecodable_input_gives_one_clear_error(
    raw: bytes | None, rule: str, problem: str
) -> None:
    with pytest.raises(SchemaError, match=problem) as caught:
        schemas.decode_result(raw)
    assert caught.value.rule == rule


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{}", "schema: is required: every fleetrun message names its schema, one of"),
        (b'{"schema": null}', "schema: null is not a fleetrun schema id"),
        (b'{"schema": "other.thing/1"}', "is not a fleetrun schema id"),
        (b'{"schema": "fleetrun.result/2"}', "unsupported schema version"),
        (b'{"schema": "fleetrun.result/1"}', "request_id: is required"),
    ],
)
def test_generic_decode_errors(raw: bytes, problem: str) -> None:
    with pytest.raises(SchemaError, match=problem):
        schemas.decode(raw)


def test_generic_decode_chooses_the_kind() -> None:
    completed = Status.completed(RID, StatusCounts.of(["ok"]), duration_ms=5, collector="c", at=T0)
    for record in (REQUEST, RESULT, completed):
        assert schemas.decode(schemas.encode(record)) == record


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (schemas.encode(RESULT), RID),
        (b'{"schema": "fleetrun.request/9", "request_id": "%s", "junk": [' % RID.encode(), None),
        (b'{"schema": "fleetrun.request/9", "request_id": "%s"}' % RID.encode(), RID),
        (b'{"request_id": "%s"}' % RID.upper().encode(), None),
        (b'{"request_id": "%s\\n"}' % RID.encode(), None),
        (b'{"request_id": 5}', None),
        (b"[1]", None),
        (None, None),
    ],
)
def test_peek_request_id_reads_invalid_messages_when_it_can(
    raw: bytes | None, expected: str | None
) -> None:
    assert schemas.peek_request_id(raw) == expected


def test_unknown_fields_are_ignored_and_not_kept() -> None:
    doc = schemas.as_document(RESULT)
    doc["added_in_1_7"] = {"anything": [1, 2]}
    doc["labels"] = {"team": "web"}
    result = schemas.decode_result(orjson.dumps(doc))
    assert result == replace(RESULT, labels={"team": "web"})
    assert "added_in_1_7" not in schemas.as_document(result)


@pytest.mark.parametrize(
    ("field", "number", "written"),
    [
        ("port", b"22.0", "22"),
        ("port", b"2.2e1", "22"),
        ("port", b"22E0", "22"),
        ("attempt", b"1e0", "1"),
        ("stdout_bytes", b"7.000", "7"),
    ],
)
def test_integers_are_written_without_a_fraction(field: str, number: bytes, written: str) -> None:
    # JSON Schema counts 22.0 as an integer; the contract does not (README, rule `integer`).
    raw = schemas.encode(RESULT)
    value = str(getattr(RESULT, field)).encode()
    raw = raw.replace(b'"%s":%s,' % (field.encode(), value), b'"%s":%s,' % (field.encode(), number))
    assert number in raw
    with pytest.raises(SchemaError) as caught:
        schemas.decode_result(raw)
    assert (caught.value.path, caught.value.rule) == (field, "integer")
    assert f"integers are written without a fraction or exponent ({written})" in str(caught.value)


def test_a_fraction_is_a_type_error_and_numbers_take_integers() -> None:
    with pytest.raises(SchemaError, match="must be an integer, not a number") as caught:
        schemas.decode_request(_request_doc(retries=1.5))
    assert caught.value.rule == "type"
    request = schemas.decode_request(_request_doc(timeout_s=5))
    assert request.timeout_s == 5.0
    assert type(request.timeout_s) is float


def test_request_defaults_apply_when_fields_are_absent() -> None:
    minimal = {
        "schema": "fleetrun.request/1",
        "request_id": RID,
        "submitted_at": T0,
        "principal": "a",
        "command": "true",
        "targets": ["h"],
    }
    request = schemas.decode_request(orjson.dumps(minimal))
    assert request == Request(
        request_id=RID, submitted_at=T0, principal="a", command="true", targets=("h",)
    )
    assert (request.timeout_s, request.max_output_bytes, request.max_errors) == (60.0, 65_536, None)
    assert (request.env, request.labels, request.expires_at) == ({}, {}, None)


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


def test_new_requests_get_an_id_and_the_time() -> None:
    request = Request.new(principal="a", command="true", targets=["h"])
    assert schemas.peek_request_id(schemas.encode(request)) == request.request_id
    assert abs(parse_timestamp(request.submitted_at) - datetime.now(UTC)) < timedelta(minutes=1)


def test_status_constructors_fill_each_state() -> None:
    accepted = Status.accepted(REQUEST, targets_total=3, collector="c", at=T0)
    assert (accepted.command, accepted.targets, accepted.targets_total) == (
        "uname -r",
        ("web[01-03]",),
        3,
    )
    assert known(accepted.reason) is None
    rejected = Status.rejected(RID, "bad", collector="c", request=REQUEST, at=T0)
    assert (known(rejected.reason), known(rejected.principal)) == ("bad", "alice")
    assert known(rejected.targets_total) is None
    counts = StatusCounts.of(["ok", "ok", "failed", "skipped"])
    completed = Status.completed(RID, counts, duration_ms=10, collector="c", at=T0)
    assert known(completed.targets_total) == 4
    assert counts.as_dict()["ok"] == 2
    for status in (accepted, rejected, completed):
        assert schemas.decode_status(schemas.encode(status)) == status
    assert set(schemas.as_document(completed)) == {
        "schema", "request_id", "state", "at", "collector", "targets_total", "counts", "duration_ms"
    }  # fmt: skip


@pytest.mark.parametrize("field", ["reason", "counts", "labels", "submitted_at", "targets_total"])
def test_absent_only_status_fields_refuse_null(field: str) -> None:
    doc = schemas.as_document(Status.accepted(REQUEST, targets_total=3, collector="c", at=T0))
    with pytest.raises(SchemaError, match="not null") as caught:
        schemas.decode_status(orjson.dumps(doc | {field: None}))
    assert (caught.value.path, caught.value.rule) == (field, "type")


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
    [
        (1_714_564_800_000, "2024-05-01T12:00:00.000000Z"),
        (1_714_564_800_123, "2024-05-01T12:00:00.123000Z"),
        (0, "1970-01-01T00:00:00.000000Z"),
        (-1, None),  # Kafka's "no timestamp"
    ],
)
def test_dead_letter_of_a_consumed_record_keeps_it_byte_for_byte(
    timestamp: int, expected: str | None
) -> None:
    record = _Consumed(timestamp=timestamp)
    error = ErrorInfo(type="SchemaError", message="not JSON")
    letter = DeadLetter.of(record, error, stage="sink", instance="x" * 1000, request_id=None, at=T0)
    assert (letter.source_topic, letter.partition, letter.offset) == ("fleetrun.requests", 3, 41)
    assert (letter.key, letter.value, letter.error) == (b"k\x00", b"\xff not json", error)
    assert letter.source_timestamp == expected
    assert len(letter.instance) == schemas.limits.MAX_INSTANCE_CHARS
    raw = schemas.encode(letter)
    assert orjson.loads(raw)["key"] == "awA="  # base64 on the wire
    assert schemas.decode_dead_letter(raw) == letter
