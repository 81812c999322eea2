"""schemas._fastrow, the C half of decode_result_row: built, used, sound, and pinned to the schema.

Soundness (it never accepts what the contract refuses, and its rows are the Python rows) is
checked by test_codec_fastpath's assert_same on every document there, and here on the edges of
every rule the C code implements and on odd values in every field.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import schemas
from schemas import limits
from schemas import strategies as S
from schemas.fastpath import NATIVE, decode_result_row, decode_result_row_python, native_row
from tests.unit.test_codec_fastpath import OK_DOC, SETTINGS, _doc, assert_same
from tests.unit.test_codec_properties import _wire

# sha256 of result.schema.json without its prose (see _rules): the rules schemas/_fastrow.c
# implements by hand. When this fails, the schema's rules changed: make _fastrow.c check the
# new rules (and add their edges to EDGES below), then record the new digest here.
RULES_DIGEST = "dc9e8d30180ff603e91a2459bb680b7544134247cd3f85e23a17536b85200bfb"
_PROSE = {"description", "title", "$comment", "examples", "errorMessage"}


def _rules(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _rules(v) for k, v in sorted(node.items()) if k not in _PROSE}
    if isinstance(node, list):
        return [_rules(v) for v in node]
    return node


def test_the_native_module_is_built_and_in_use() -> None:
    assert NATIVE, (
        "schemas._fastrow was not built, so the sink decodes results at Python speed: install a "
        "C compiler and Python's headers (apt install gcc python3-dev) and run `make setup`"
    )


def test_the_schema_rules_the_c_code_implements_are_unchanged() -> None:
    rules = orjson.dumps(_rules(schemas.load_schema("result")), option=orjson.OPT_SORT_KEYS)
    assert hashlib.sha256(rules).hexdigest() == RULES_DIGEST, (
        "result.schema.json's rules changed: update schemas/_fastrow.c to match, then this digest"
    )


def test_it_vouches_for_the_common_result_alone() -> None:
    raw = _wire(OK_DOC)
    row = native_row(raw)
    assert row is not None
    assert row == decode_result_row_python(raw)
    assert decode_result_row(raw, 7, 8) == (*row, 7, 8)


@SETTINGS
@given(S.results(output=st.text().map(str.encode)))
def test_it_vouches_for_any_whole_text_output(result: schemas.Result) -> None:
    raw = schemas.encode(result)
    doc = orjson.loads(raw)
    stored = assert_same(raw)[0] == "row"
    whole = not (doc["stdout_truncated"] or doc["stderr_truncated"])
    text = doc["stdout_encoding"] == doc["stderr_encoding"] == "utf-8"
    zulu = doc["started_at"].endswith("Z") and doc["finished_at"].endswith("Z")
    if stored and whole and text and zulu:
        assert native_row(raw) is not None, raw


# Rarer shapes: valid, left to the Python code, stored the same.
RARER = {
    "base64 output": _doc(stdout="AP8B", stdout_encoding="base64", stdout_bytes=3),
    "truncated output": _doc(stdout="abc", stdout_bytes=10, stdout_truncated=True),
    "offset timestamp": _doc(started_at="2024-05-01T14:00:00+02:00"),
    "nine fraction digits": _doc(finished_at="2024-05-01T12:00:01.123456789Z"),
    "integral float": _doc(port=22.0),
}


@pytest.mark.parametrize("doc", list(RARER.values()), ids=list(RARER))
def test_rarer_valid_shapes_go_to_python(doc: dict[str, Any]) -> None:
    raw = _wire(doc)
    assert native_row(raw) is None
    assert assert_same(raw)[0] == "row"


TIMESTAMPS = (
    "2024-05-01T12:00:01Z", "2024-05-01T12:00:01.1Z", "2024-05-01T12:00:01.123456Z",
    "2024-05-01T12:00:01.1234567Z", "2024-05-01T12:00:01.Z", "2024-00-01T12:00:01Z",
    "2024-13-01T12:00:01Z", "2024-05-00T12:00:01Z", "2024-05-32T12:00:01Z",
    "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
    "2024-05-01T24:00:00Z", "2024-05-01T23:60:00Z", "2024-05-01T23:59:60Z",
    "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
    "2024-05-01t12:00:01Z", "2024-05-01T12:00:01z", "2024-05-01 12:00:01Z",
    "2024-05-01T12:00:01+00:00", "2024-5-01T12:00:01Z", "+024-05-01T12:00:01Z",
    "2024-05-01T12:00:0１Z", "2024-05-01T12:00:01.12345ZZ",
)  # fmt: skip
_LABELS_32 = {f"k{i}": "v" for i in range(32)}
# The edges of every rule the C code implements: each (field, value) just inside or outside.
EDGES: list[tuple[str, Any]] = [
    ("schema", "fleetrun.result/2"),
    ("request_id", "0B6E9C1A-5F0E-4A57-9D1C-2F2B7C8E4A10"),
    ("request_id", "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a1"),
    ("request_id", "0b6e9c1a_5f0e-4a57-9d1c-2f2b7c8e4a10"),
    ("request_id", "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a1g"),
    *[("host", h) for h in ("a", ":1", "::1", ".a", "-a", "_a", "a b", "é", "a" * 253, "a" * 254)],
    *[("port", p) for p in (0, 1, 65535, 65536, -1, True)],
    *[("user", u) for u in ("", "u", "u" * 64, "u" * 65, "ü" * 64, "ü" * 65, "a\x00", "✓")],
    *[("attempt", a) for a in (0, 1, 100, 101, False)],
    *[("status", s) for s in ("ok", "OK", "failed", "error", "nope", "")],
    *[("exit_status", e) for e in (None, 0, 1, -1, 4294967295, 4294967296, 0.0)],
    *[("exit_signal", s) for s in ("KILL", "", "S" * 64, "S" * 65, "K L", "a@._+-", "É")],
    *[("stdout_bytes", b) for b in (-1, 0, 1, limits.MAX_OUTPUT_BYTES + 1, 2**53)],
    *[("stdout_sha256", h) for h in ("0" * 64, "0" * 63, "A" * 64, "g" * 64, "0" * 65)],
    *[("duration_ms", d) for d in (-1, 0, 2**53 - 1, 2**53, 2**64, 1.5)],
    *[("collector", c) for c in ("", "c", "c" * 128, "c" * 129, "ç" * 128, "c\x00")],
    ("error", {"type": "T", "message": ""}),
    ("error", {"type": "", "message": "m"}),
    ("error", {"type": "T" * 128, "message": "m" * 4096}),
    ("error", {"type": "T" * 129, "message": "m"}),
    ("error", {"type": "T", "message": "m" * 4097}),
    ("error", {"type": "T\x00", "message": "m"}),
    ("error", {"type": "T", "message": "m\x00"}),
    ("error", {"type": "T"}),
    ("error", {"message": "m"}),
    ("error", {"type": "T", "message": "m", "extra": 1}),
    ("error", {"type": 1, "message": "m"}),
    ("labels", _LABELS_32),
    ("labels", {**_LABELS_32, "k32": "v"}),
    ("labels", {"k" * 63: "v"}),
    ("labels", {"k" * 64: "v"}),
    ("labels", {"": "v"}),
    ("labels", {"-k": "v"}),
    ("labels", {"9a_b.c/d-e": "v"}),
    ("labels", {"k:": "v"}),
    ("labels", {"ké": "v"}),
    ("labels", {"k": "v" * 256}),
    ("labels", {"k": "v" * 257}),
    ("labels", {"k": "ü" * 256}),
    ("labels", {"k": "v\x00"}),
    ("labels", {"k": 1}),
    ("labels", []),
    *[("started_at", t) for t in TIMESTAMPS],
]
# Values no field of a valid result takes, tried in every field.
ODD = [None, True, 0, -1, 2**63, 1.5, "", "x" * 300, "\x00", "é", {}, [], {"a": 1}, [1]]


@pytest.mark.parametrize(("field", "value"), EDGES, ids=lambda v: repr(v)[:40])
def test_the_edges_of_each_rule(field: str, value: Any) -> None:
    assert_same(_wire(_doc(**{field: value})))


@pytest.mark.parametrize("field", sorted(OK_DOC))
def test_odd_values_in_every_field(field: str) -> None:
    for value in ODD:
        assert_same(_wire(_doc(**{field: value})))
    missing = {k: v for k, v in OK_DOC.items() if k != field}
    assert_same(_wire(missing))


def test_text_output_sizes_are_counted_in_utf8_bytes() -> None:
    for text in ("", "a", "é", "€", "\U0001f600", "aé€\U0001f600" * 50):
        size = len(text.encode())
        for stream in ("stdout", "stderr"):
            for declared in (size - 1, size, size + 1):
                assert_same(_wire(_doc(**{stream: text, f"{stream}_bytes": max(0, declared)})))
        assert native_row(_wire(_doc(stdout=text, stdout_bytes=size))) is not None


def test_not_json_and_wrong_arguments() -> None:
    odd: list[Any] = [b"", b"{", b"[]", b"null", b'"s"', None, 5, "{}"]
    for raw in odd:
        assert native_row(raw) is None
    with pytest.raises(TypeError, match="raw message"):
        importlib.import_module("schemas._fastrow").row()


def test_no_references_leak() -> None:
    # tracemalloc sees every Python object the C code allocates: a row, a datetime or a labels
    # string not released shows up as growth proportional to the calls.
    good = _wire(_doc(labels={"team": "web"}))
    bad = [_wire(_doc(**{field: value})) for field, value in EDGES[:40]]
    for raw in [good, *bad]:
        native_row(raw)  # warm up caches (interned keys, orjson's key cache)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5_000):
            native_row(good)
            for raw in bad:
                native_row(raw)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown:,} bytes held after 205,000 calls"


def test_the_environment_can_turn_it_off() -> None:
    code = "from schemas.fastpath import NATIVE; print(NATIVE)"
    env = {**os.environ, "FLEETRUN_NATIVE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
