"""schemas.fastpath.decode_result_row is decode_result + the sink's row building, only cheaper.

For every input — schema-generated documents, records with arbitrary output, the contract's
examples, mutations aimed at each cross-field rule, random mutations, non-JSON — every path
(decode_result + result_row, the fast path in Python, the fast path with its C half) either gives
the same stored row or raises the same error (type, message, path and rule); and whenever the C
half vouches for a message on its own, its row is that same row.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas import SchemaError, limits
from schemas import strategies as S
from schemas.fastpath import (
    RESULT_ROW_FIELDS,
    decode_result_row,
    decode_result_row_python,
    native_row,
)
from sink.rows import RESULT_COLUMNS, decode_result_record, result_row
from tests.unit.test_codec_properties import (
    DOCUMENTS,
    _mutations,
    _satisfy_cross_field_rules,
    _wire,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Documents drawn from the schema file are slow to generate (~0.2 s each for a result).
SCHEMA_SETTINGS = settings(SETTINGS, max_examples=40)
EXAMPLES = sorted((Path(schemas.__file__).parent / "examples" / "result").glob("*.json"))
OK_DOC: dict[str, Any] = orjson.loads(
    (Path(schemas.__file__).parent / "examples" / "result" / "valid-ok.json").read_bytes()
)

Outcome = tuple[Any, ...]


def _outcome(fn: Any, raw: Any) -> Outcome:
    try:
        return ("row", fn(raw))
    except SchemaError as exc:
        return ("SchemaError", str(exc), exc.path, exc.rule)
    except Exception as exc:  # anything else must be the same too (the sink dead-letters it)
        return (type(exc).__name__, str(exc))


def _reference(raw: Any) -> tuple[Any, ...]:
    """The sink's row before the fast path: a Result, then its row (without partition, offset)."""
    return result_row(schemas.decode_result(raw), 0, 0)[:-2]


def assert_same(raw: Any) -> Outcome:
    """Every path agrees on `raw`; returns the outcome."""
    expected = _outcome(_reference, raw)
    for path in (decode_result_row, decode_result_row_python):
        assert _outcome(path, raw) == expected, (path.__name__, raw)
    native = native_row(raw)
    if native is not None:
        assert expected[0] == "row", ("the C path accepted what the contract refuses", raw)
        assert native == expected[1], raw
    if expected[0] == "row":
        # Values of the same type too: asyncpg encodes by type (an int is not a float).
        for row in (decode_result_row(raw), native):
            if row is not None:
                assert [type(v) for v in row] == [type(v) for v in expected[1]]
                assert [getattr(v, "tzinfo", None) for v in row] == [
                    getattr(v, "tzinfo", None) for v in expected[1]
                ]
    return expected


def test_row_fields_are_the_sink_columns() -> None:
    assert len(RESULT_ROW_FIELDS) == len(set(RESULT_ROW_FIELDS))
    assert RESULT_COLUMNS[:-2] == tuple("ssh_user" if f == "user" else f for f in RESULT_ROW_FIELDS)
    raw = _wire(OK_DOC)
    assert decode_result_record(raw, 4, 99) == result_row(schemas.decode_result(raw), 4, 99)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_contract_examples(path: Path) -> None:
    outcome = assert_same(path.read_bytes())
    assert (outcome[0] == "row") == path.name.startswith("valid-")


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"nul", b"[]", b"1", b'"x"', b"{}", b'{"schema": 1}',
     b'{"schema": "fleetrun.result/2"}', b'{"schema": "fleetrun.status/1"}', "not bytes",
     bytearray(b"{]"), memoryview(b"{}")],
)  # fmt: skip
def test_not_a_result_at_all(raw: Any) -> None:
    assert assert_same(raw)[0] == "SchemaError"


def _doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(OK_DOC)
    doc.update(changes)
    return doc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_TEXT = "héllo wörld ✓ \U0001f600\n"
_CROSS_FIELD_CASES = {
    # output sizes: ASCII, non-ASCII text (bytes > characters), base64 (decoded length)
    "ascii exact": _doc(stdout="abc", stdout_bytes=3),
    "ascii short": _doc(stdout="abc", stdout_bytes=2),
    "ascii long": _doc(stdout="abc", stdout_bytes=4),
    "ascii truncated": _doc(stdout="abc", stdout_bytes=4, stdout_truncated=True),
    "ascii truncated wrongly": _doc(stdout="abc", stdout_bytes=3, stdout_truncated=True),
    "text exact": _doc(stdout=_TEXT, stdout_bytes=len(_TEXT.encode())),
    "text counted in characters": _doc(stdout=_TEXT, stdout_bytes=len(_TEXT)),
    "text truncated": _doc(stdout=_TEXT, stdout_bytes=999, stdout_truncated=True),
    "stderr text": _doc(stderr=_TEXT, stderr_bytes=len(_TEXT.encode())),
    "stderr short": _doc(stderr=_TEXT, stderr_bytes=1),
    "stderr long": _doc(stderr=_TEXT, stderr_bytes=len(_TEXT.encode()) + 1),
    "base64 binary": _doc(stdout=_b64(b"\x00\xff\x01"), stdout_encoding="base64", stdout_bytes=3),
    "base64 wrong size": _doc(stdout=_b64(b"\x00\xff"), stdout_encoding="base64", stdout_bytes=3),
    "base64 of text is stored as text": _doc(
        stdout=_b64(_TEXT.encode()), stdout_encoding="base64", stdout_bytes=len(_TEXT.encode())
    ),
    "base64 non-canonical padding bits": _doc(
        stdout="AB==", stdout_encoding="base64", stdout_bytes=1
    ),
    "base64 empty": _doc(stdout="", stdout_encoding="base64", stdout_bytes=0),
    "base64 bad": _doc(stdout="A===", stdout_encoding="base64", stdout_bytes=0),
    "base64 stderr": _doc(stderr=_b64(b"\x00" * 7), stderr_encoding="base64", stderr_bytes=7),
    "text holding base64 alphabet": _doc(stdout="AAAA", stdout_bytes=4),
    "utf-8 with NUL": _doc(stdout="a\x00b", stdout_bytes=3),
    "over the size limit": _doc(
        stdout="x", stdout_bytes=limits.MAX_OUTPUT_BYTES + 1, stdout_truncated=True
    ),
    "both streams wrong": _doc(stdout="ab", stdout_bytes=1, stderr="cd", stderr_bytes=1),
    # timestamps: calendar, offsets, fractions, range
    "30 February": _doc(started_at="2024-02-30T00:00:00Z"),
    "finished 30 February": _doc(finished_at="2023-02-29T00:00:00Z"),
    "both impossible": _doc(started_at="2024-02-30T00:00:00Z", finished_at="2024-13-01T00:00:00Z"),
    "offsets": _doc(
        started_at="2024-05-01T14:00:00+02:00", finished_at="2024-05-01T06:30:01-05:30"
    ),
    "nine fraction digits": _doc(finished_at="2024-05-01T12:00:01.123456789Z"),
    "out of range once in UTC": _doc(started_at="0001-01-01T00:30:00+01:00"),
    "year 9999 minus offset": _doc(finished_at="9999-12-31T23:59:59-01:00"),
    "lower-case z": _doc(started_at="2024-05-01T12:00:00z"),
    # integers written as floats, labels, errors
    "integral floats": _doc(port=22.0, attempt=2.0, stdout_bytes=102.0, duration_ms=5.0),
    "exit status float": _doc(status="failed", exit_status=3.0),
    "float that is not an integer": _doc(port=22.5),
    "no labels": _doc(labels={}),
    "unicode labels": _doc(labels={"k": "välue ✓", "a.b/c-d_e": ""}),
    "error": _doc(status="error", exit_status=None, error={"type": "OSError", "message": "m"}),
    "error status without error": _doc(status="error", exit_status=None),
    "ok with signal": _doc(exit_signal="KILL"),
    "unknown field": _doc(extra={"ignored": True}),
    "missing stdout": {k: v for k, v in OK_DOC.items() if k != "stdout"},
}


@pytest.mark.parametrize("doc", list(_CROSS_FIELD_CASES.values()), ids=list(_CROSS_FIELD_CASES))
def test_each_cross_field_rule(doc: dict[str, Any]) -> None:
    assert_same(_wire(doc))


def test_base64_output_that_is_text_is_stored_as_text_like_before() -> None:
    doc = _CROSS_FIELD_CASES["base64 of text is stored as text"]
    row = dict(zip(RESULT_ROW_FIELDS, decode_result_row(_wire(doc)), strict=True))
    assert (row["stdout"], row["stdout_encoding"]) == (_TEXT, "utf-8")


@SETTINGS
@given(S.results(output=st.binary(max_size=600)))
def test_records_with_any_output(result: schemas.Result) -> None:
    raw = schemas.encode(result)
    assert assert_same(raw)[0] == "row"


@SETTINGS
@given(
    S.results(output=st.binary(max_size=60)),
    st.sampled_from(["stdout", "stderr"]),
    st.integers(-3, 3),
    st.booleans(),
    st.booleans(),
)
def test_records_with_mismatched_sizes_flags_and_encodings(
    result: schemas.Result, stream: str, delta: int, flip_truncated: bool, flip_encoding: bool
) -> None:
    doc = orjson.loads(schemas.encode(result))
    doc[f"{stream}_bytes"] = max(0, doc[f"{stream}_bytes"] + delta)
    if flip_truncated:
        doc[f"{stream}_truncated"] = not doc[f"{stream}_truncated"]
    if flip_encoding:
        # Text read as base64 and base64 read as text: sometimes still valid, often not.
        doc[f"{stream}_encoding"] = {"utf-8": "base64", "base64": "utf-8"}[
            doc[f"{stream}_encoding"]
        ]
    assert_same(_wire(doc))


@SETTINGS
@given(st.text(max_size=40), st.booleans())
def test_any_text_as_either_encoding(text: str, as_base64: bool) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    doc = _doc(stdout=text, stdout_bytes=size, stdout_encoding="base64" if as_base64 else "utf-8")
    assert_same(_wire(doc))


@SCHEMA_SETTINGS
@given(
    DOCUMENTS["result"],
    st.lists(
        st.tuples(
            st.sampled_from(sorted(schemas.load_schema("result")["properties"]))
            | st.text(max_size=5),
            _mutations(),
        ),
        max_size=3,
    ),
)
def test_schema_documents_and_their_mutations(
    doc: dict[str, Any], changes: list[tuple[str, tuple[str, Any]]]
) -> None:
    assert_same(_wire(doc))
    fixed = _satisfy_cross_field_rules("result", doc)
    assert assert_same(_wire(fixed))[0] == "row"
    mutated = copy.deepcopy(fixed)
    for field, (sub, value) in changes:
        target = mutated.get(field)
        if isinstance(target, dict) and sub:
            target[sub] = value  # inside objects too: labels, error
        else:
            mutated[field] = value
    assert_same(_wire(mutated))
