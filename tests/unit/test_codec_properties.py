"""Properties: records round-trip exactly, and they accept exactly what the schema files accept.

The differential test holds the decoders against an oracle: jsonschema's Draft 2020-12 validator
reading the schema files, with patterns read as ECMA-262 does (test_schemas_examples.oracle).
For every document, both ways:
- the oracle refuses it ⇒ the decoder raises SchemaError;
- the oracle accepts it ⇒ the decoder accepts it, or refuses it for one of the documented rules
  beyond the schema files (schemas.CROSS_FIELD_RULES), and then that rule really is broken, and
  once it is mended (the document staying schema-valid) the decoder accepts it.
Documents come from the schema files themselves (hypothesis-jsonschema), from the record
strategies and from schemas/examples, each also mutated at random: trailing newlines, NUL, 5.0
for 5, lowercase z, "+0200", ten fraction digits, null where a field may only be absent,
unknown fields, boundary numbers, missing fields... Every valid example is also mutated
exhaustively, one value at a time with each near miss, which finds deterministically what the
random mutations only sample.

Not compared, on purpose: an escaped unpaired surrogate ("\ud800"), which Python's json reads
and the codec refuses as invalid JSON (README: strings hold Unicode characters only), and
duplicate member names, whose meaning JSON leaves open.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as conjecture_utils

import schemas
from schemas import SchemaError, TargetError, limits
from schemas import strategies as S
from tests.support.contract import DECODERS, EXAMPLES, instant, oracle

try:
    import hypothesis_jsonschema._from_schema as hjs_internals
    from hypothesis_jsonschema import from_schema
except ImportError:  # pragma: no cover
    pytest.skip("hypothesis-jsonschema is not installed", allow_module_level=True)

# Documents are large and slow to draw by design (a result has 25 fields); none of these says
# anything about the codec.
_HEALTH: Final = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=_HEALTH)


class _ManyCompat:
    """hypothesis-jsonschema 0.23.1 drives Hypothesis' private `many` with `.more()`, which
    Hypothesis 6.170 replaced by iteration; this adapter restores the old calls on the new API."""

    def __init__(self, data: Any, min_size: int, max_size: float, average_size: float) -> None:
        self._many = conjecture_utils.many(
            data, min_size=min_size, max_size=max_size, average_size=average_size
        )
        self._many.__enter__()
        self._iter = iter(self._many)

    def more(self) -> bool:
        try:
            next(self._iter)
        except StopIteration:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self) -> None:
        self._many.reject()


if not hasattr(conjecture_utils.many, "more"):
    hjs_internals.cu = types.SimpleNamespace(many=_ManyCompat)  # type: ignore[attr-defined,assignment]

# RFC 3339 date-times over a realistic range (the schema pattern still filters them): the
# library's default draws years from 0001, where a negative offset leaves datetime's range.
# Overriding a standard format warns, so the schema copy names the format differently.
DATE_TIMES = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2998, 12, 31),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
    ),
).map(lambda d: d.isoformat().replace("+00:00", "Z"))
DOCUMENTS = {
    kind: from_schema(
        json.loads(
            json.dumps(schemas.load_schema(kind)).replace('"date-time"', '"rfc3339-in-range"')
        ),
        custom_formats={"rfc3339-in-range": DATE_TIMES},
    )
    for kind in schemas.KINDS
}

# The schema file's timestamp pattern, to recognise timestamps worth near misses.
_TIMESTAMP: Final = re.compile(
    schemas.load_schema("request")["$defs"]["timestamp"]["pattern"].removesuffix("$") + r"\Z"
)


# --- round trips ------------------------------------------------------------------------------


@SETTINGS
@given(S.messages)
def test_every_record_round_trips_and_satisfies_the_schema_files(message: schemas.Message) -> None:
    raw = schemas.encode(message)
    assert schemas.decode(raw) == message
    assert schemas.encode(schemas.decode(raw)) == raw  # one way to write each record
    kind = next(k for k, t in schemas.RECORD_TYPES.items() if type(message) is t)
    assert oracle(kind).is_valid(json.loads(raw))


@SETTINGS
@given(S.results(output=st.binary(max_size=2_000)))
def test_arbitrary_output_bytes_round_trip(result: schemas.Result) -> None:
    decoded = schemas.decode_result(schemas.encode(result))
    assert decoded == result
    assert (decoded.stdout_data, decoded.stderr_data) == (result.stdout_data, result.stderr_data)
    assert decoded.stdout_truncated == (len(decoded.stdout_data) < decoded.stdout_bytes)


# --- the differential test --------------------------------------------------------------------

# Where a value sits in a document: its path as SchemaError writes it, the container, the key.
Location = tuple[str, Any, Any]
_ABSENT: Final = object()


def _locations(node: Any, prefix: str = "") -> Iterator[Location]:
    items = enumerate(node) if isinstance(node, list) else node.items()
    for key, value in items:
        if isinstance(node, list):
            path = f"{prefix}[{key}]"
        else:
            path = f"{prefix}.{key}" if prefix else str(key)
        yield path, node, key
        if isinstance(value, dict | list):
            yield from _locations(value, path)


def _at(doc: dict[str, Any], path: str) -> Any:
    return next((c[k] for p, c, k in _locations(doc) if p == path), _ABSENT)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _has_surrogate(doc: Any) -> bool:
    return any(re.search("[\ud800-\udfff]", s) for s in _strings(doc))


def _wire(doc: Any, *, escape: bool = False) -> bytes:
    # stdlib json: writes integers past 64 bits exactly, and 5.0 as 5.0.
    return json.dumps(doc, ensure_ascii=escape or _has_surrogate(doc), allow_nan=False).encode()


def _outcome(
    decode: Callable[[bytes], schemas.Message], raw: bytes
) -> schemas.Message | SchemaError:
    try:
        return decode(raw)
    except SchemaError as error:
        return error


def _captured(doc: dict[str, Any], stream: str) -> bytes | None:
    """The bytes a stream's text stands for, decoded independently of schemas.output."""
    text = doc[stream]
    if doc[f"{stream}_encoding"] == "base64":
        return base64.b64decode(text, validate=True)
    try:
        return bytes(text.encode())
    except UnicodeEncodeError:
        return None


def _really_broken(kind: str, doc: dict[str, Any], error: SchemaError) -> bool:
    """Whether the schema-valid `doc` truly breaks the extra rule `error` names, there."""
    value = _at(doc, error.path)
    rule = error.rule
    if rule == "integer":
        return type(value) is float and value.is_integer()
    if rule == "date-time":
        return isinstance(value, str) and instant(value) is None
    if rule == "expires_at":
        submitted, expires = instant(doc["submitted_at"]), instant(doc["expires_at"])
        return (
            error.path == "expires_at"
            and submitted is not None
            and expires is not None
            and expires <= submitted
        )
    if rule == "targets":
        try:
            schemas.check_targets(doc["targets"])
        except TargetError:
            return error.path == "targets" or error.path.startswith("targets[")
        return False
    if rule in ("output", "output_size", "truncated"):
        stream = error.path.removesuffix("_truncated")
        captured = _captured(doc, stream)
        if rule == "output":
            return captured is None
        assert captured is not None
        size = len(captured)
        total: int = doc[f"{stream}_bytes"]
        truncated: bool = doc[f"{stream}_truncated"]
        if rule == "output_size":
            return size > min(total, limits.MAX_OUTPUT_BYTES)
        return truncated != (size < total)
    if rule == "counts":
        return kind == "status" and sum(doc["counts"].values()) != doc["targets_total"]
    if rule == "shard":
        return kind == "shard" and error.path == "index" and doc["index"] >= doc["count"]
    return False


def _mend(kind: str, doc: dict[str, Any], error: SchemaError) -> None:
    """Make `doc` meet the extra rule `error` names, keeping it schema-valid."""
    rule = error.rule
    location = (
        next((c, k) for p, c, k in _locations(doc) if p == error.path) if error.path else None
    )
    if rule == "integer" and location:
        container, key = location
        container[key] = int(container[key])
    elif rule == "date-time" and location:
        container, key = location
        container[key] = "2024-05-01T12:00:00Z"
    elif rule == "expires_at":
        del doc["expires_at"]
    elif rule == "targets":
        doc["targets"] = ["web[01-03]", "@canary", "!web02"]
    elif rule in ("output", "output_size", "truncated"):
        stream = error.path.removesuffix("_truncated")
        captured = _captured(doc, stream)
        if captured is None or len(captured) > limits.MAX_OUTPUT_BYTES:
            doc[stream], doc[f"{stream}_encoding"], captured = "", "utf-8", b""
        doc[f"{stream}_bytes"], doc[f"{stream}_truncated"] = len(captured), False
    elif rule == "counts":
        doc["counts"] = dict.fromkeys(schemas.RESULT_STATUSES, 0) | {"ok": doc["targets_total"]}
    elif rule == "shard":
        doc["index"] = doc["count"] - 1
    else:  # pragma: no cover - a rule the test does not know how to mend
        raise AssertionError(f"cannot mend {error!r} ({rule})")


def check(kind: str, doc: Any, *, escape: bool = False) -> schemas.Message | SchemaError:
    """Hold decode_<kind> and decode against the oracle on `doc` (see the module docstring)."""
    raw = _wire(doc, escape=escape)
    outcome = _outcome(DECODERS[kind], raw)
    if _has_surrogate(doc):
        # The wire is UTF-8 JSON: an unpaired surrogate escape names no character, and the
        # parsers refuse it before any schema rule (README, "Encoding rules").
        assert isinstance(outcome, SchemaError), raw
        assert outcome.rule == "json", outcome
        return outcome
    parsed = json.loads(raw)
    if not oracle(kind).is_valid(parsed):
        if not isinstance(outcome, SchemaError):
            first = next(iter(oracle(kind).iter_errors(parsed)))
            raise AssertionError(
                f"accepted what the schema refuses ({first.json_path}: {first.message}): {raw!r}"
            )
    elif isinstance(outcome, SchemaError):
        assert outcome.rule in schemas.CROSS_FIELD_RULES, (
            f"refused a schema-valid document for {outcome.rule!r} ({outcome}): {raw!r}"
        )
        assert _really_broken(kind, parsed, outcome), f"{outcome.rule}: {outcome} in {raw!r}"
        _accepted_once_mended(kind, parsed)
    else:
        assert schemas.decode(schemas.encode(outcome)) == outcome
        written = schemas.as_document(outcome)
        for name, value in parsed.items():
            if isinstance(value, str) and name not in ("key", "value"):  # base64 is bytes
                assert written.get(name, value) == value, name  # kept as written
    if isinstance(parsed, dict) and parsed.get("schema") == schemas.SCHEMA_IDS[kind]:
        generic = _outcome(schemas.decode, raw)
        if isinstance(outcome, SchemaError):
            assert isinstance(generic, SchemaError)
            assert generic.__reduce__() == outcome.__reduce__()
        else:
            assert generic == outcome
    return outcome


def _accepted_once_mended(kind: str, doc: dict[str, Any]) -> schemas.Message:
    doc = copy.deepcopy(doc)
    for _ in range(20):
        outcome = _outcome(DECODERS[kind], _wire(doc))
        if not isinstance(outcome, SchemaError):
            return outcome
        assert outcome.rule in schemas.CROSS_FIELD_RULES, (outcome, doc)
        assert _really_broken(kind, doc, outcome), (outcome, doc)
        _mend(kind, doc, outcome)
        assert oracle(kind).is_valid(doc), doc  # mending kept it schema-valid
    raise AssertionError(f"still refused after mending: {doc}")


# --- mutations --------------------------------------------------------------------------------

RID = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"
SAMPLES: Final = [
    "",
    " ",
    "\n",
    "\x00",
    "a\x00",
    "\u00a0",
    "é",
    "٣",
    "🚀",
    "\ud800",
    "A\n",
    "web01",
    "web01\n",
    "web[01-03]",
    "web[1-",
    "@canary",
    "n[1-100000]",
    "KILL",
    "KILL\n",
    "10%",
    "100%",
    "101%",
    "10%\n",
    "ok",
    "error",
    "skipped",
    "utf-8",
    "UTF-8",
    "base64",
    "accepted",
    "rejected",
    "completed",
    "collector",
    "sink",
    "fleetrun.requests",
    "YQ==",
    "YR==",
    "YQ==\n",
    "YQ",
    "YWJj=",
    "YWJj====",
    "-_8=",
    RID,
    RID + "\n",
    RID.upper(),
    schemas.EMPTY_SHA256,
    schemas.EMPTY_SHA256 + "\n",
    schemas.EMPTY_SHA256.upper(),
    "2024-05-01T12:00:00Z",
    "2024-05-01T12:00:00Z\n",
    "2024-05-01T12:00:00z",
    "2024-05-01t12:00:00Z",
    "2024-05-01 12:00:00Z",
    "2024-05-01T12:00:00+0200",
    "2024-05-01T12:00:00+02:00",
    "2024-05-01T12:00:00-00:00",
    "2024-05-01T12:00:00+05:60",
    "2024-05-01T12:00:00+24:00",
    "2024-05-01T12:00:00.123456789Z",
    "2024-05-01T12:00:00.1234567890Z",
    "2024-05-01T12:00:00.Z",
    "2024-05-01T24:00:00Z",
    "2024-05-01T12:00:60Z",
    "2024-02-29T12:00:00Z",
    "2023-02-29T12:00:00Z",
    "2024-04-31T12:00:00Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2024-05-01T12:00:00Z2024-05-01T12:00:00Z",
    "٢٠٢٤-05-01T12:00:00Z",
]
NUMBERS: Final = [
    0,
    1,
    -1,
    0.0,
    -0.0,
    5.0,
    1.5,
    1e2,
    0.1,
    0.09999999999999999,
    22,
    65535,
    65536,
    100,
    101,
    10_000,
    10_001,
    86_400,
    86_400.5,
    limits.MAX_OUTPUT_BYTES,
    limits.MAX_OUTPUT_BYTES + 1,
    limits.MAX_PARTITION + 1,
    limits.MAX_EXIT_STATUS + 1,
    limits.MAX_SAFE_INTEGER,
    limits.MAX_SAFE_INTEGER + 1,
    2**63,
    -(2**63) - 1,
    2**64,
    float(2**53),
    1e20,
]
VALUES: Final = st.one_of(
    st.sampled_from(SAMPLES),
    st.sampled_from(NUMBERS),
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**6), 10**6).map(float),
    st.text(max_size=12),
    st.lists(st.sampled_from(SAMPLES), max_size=3),
    st.dictionaries(st.sampled_from(SAMPLES), st.sampled_from([*SAMPLES, None, 1]), max_size=3),
)
# Field names to add: every field of every kind (absent-only status fields among them) and a few
# the contract does not know.
NAMES: Final = sorted(
    {name for kind in schemas.KINDS for name in schemas.load_schema(kind)["properties"]}
    | {*schemas.RESULT_STATUSES, "type", "message", "added_in_1_7", "", "A", "a", "-x", "A\n"}
    | {"A" * 129, "k" * 64}
)


def _variants(value: Any) -> list[Any]:
    """Near misses of `value`: the mutations most likely to cross a boundary."""
    if isinstance(value, bool):
        return [not value, int(value), None]
    if isinstance(value, int):
        return [float(value), value + 1, value - 1, -value, value * 2**20, str(value), None]
    if isinstance(value, float):
        near = [int(value), value + 0.5, -value, value * 1e6, float(round(value)), None]
        return [v for v in near if not isinstance(v, float) or math.isfinite(v)]  # JSON has no inf
    if isinstance(value, str):
        found = [
            value + "\n",
            "\n" + value,
            value + "\x00",
            value.upper(),
            value.lower(),
            value + " ",
            value + "=",  # base64: padding after a whole group
            value[1:],
            value * 2,
            value * 300,
            None,
        ]
        if _TIMESTAMP.match(value):
            base = value[:19]
            found += [
                value.replace("Z", "z"),
                value.replace("T", " "),
                base + "+0200",
                base + "+05:60",
                base + "+24:00",
                base + ".1234567890Z",
                base + ".123456789+01:00",
                base[:11] + "24" + base[13:] + "Z",
                base[:17] + "60Z",
                "0000" + value[4:],
                base[:5] + "02-30" + base[10:] + "Z",
                value.replace("1", "٣", 1),
            ]
        return found
    if isinstance(value, list):
        return [[], value * 2, [*value, None], [*value, ""], [*value, "a b"], value[:1] * 1001]
    if isinstance(value, dict):
        return [
            {},
            value | {"A\n": "v"},
            value | {"-x": "v"},
            value | {"": "v"},
            value | {"K": "v\x00"},
            value | {"K": None},
            value | {"K": 5.0},
            value | {f"K{i}": "v" for i in range(70)},
            dict(list(value.items())[:-1]),
        ]
    return []


def _mutate(data: st.DataObject, doc: Any) -> Any:
    """`doc` with one to three values replaced by a near miss or anything, removed, or added."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        locations = list(_locations(doc)) if isinstance(doc, dict | list) else []
        action = data.draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
        if action == "add" or not locations:
            containers = [doc] + [c[k] for _, c, k in locations if isinstance(c[k], dict)]
            container = data.draw(st.sampled_from(containers), label="into")
            if isinstance(container, dict):
                name = data.draw(st.sampled_from(NAMES) | st.text(max_size=6), label="name")
                container[name] = data.draw(VALUES, label="value")
            continue
        _, container, key = data.draw(st.sampled_from(locations), label="at")
        if action == "remove":
            del container[key]
            continue
        variants = st.sampled_from(_variants(container[key]) or [None])
        container[key] = data.draw(st.one_of(variants, variants, VALUES), label="value")
    return doc


def _check_with_mutations(data: st.DataObject, kind: str, doc: Any, copies: int) -> None:
    check(kind, doc, escape=data.draw(st.booleans(), label="escape"))
    for _ in range(copies):
        check(kind, _mutate(data, doc))


@pytest.mark.parametrize("kind", schemas.KINDS)
def test_documents_generated_from_the_schema_files(kind: str) -> None:
    # Generating documents from the schema files is slow (~0.15 s each for a result): each one
    # is checked, and so are several mutated copies of it.
    @settings(SETTINGS, max_examples=40)
    @given(DOCUMENTS[kind], st.data())
    def run(doc: dict[str, Any], data: st.DataObject) -> None:
        _check_with_mutations(data, kind, doc, copies=6)

    run()


@SETTINGS
@given(S.messages, st.data())
def test_documents_of_generated_records(message: schemas.Message, data: st.DataObject) -> None:
    kind = next(k for k, t in schemas.RECORD_TYPES.items() if type(message) is t)
    _check_with_mutations(data, kind, schemas.as_document(message), copies=4)


def _example_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*-*.json")), ids=_example_id)
def test_examples_and_their_mutations(path: Path) -> None:
    kind = path.parent.name
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError:
        with pytest.raises(SchemaError, match="not valid JSON"):
            DECODERS[kind](path.read_bytes())
        return

    @settings(SETTINGS, max_examples=25)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        _check_with_mutations(data, kind, doc, copies=2)

    run()


# Every near miss of every value of every valid example, one at a time: exhaustive where the
# random mutations above sample, and deterministic.
ANYTHING: Final[list[Any]] = [None, True, 0, -1, 5.0, "", "\x00", "A\n", [], {}]


def _single_mutations(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for index, (_, container, key) in enumerate(_locations(doc)):
        for value in [*_variants(container[key]), *ANYTHING]:
            mutated = copy.deepcopy(doc)
            _, target, at = list(_locations(mutated))[index]
            target[at] = value
            yield mutated
        mutated = copy.deepcopy(doc)
        _, target, at = list(_locations(mutated))[index]
        del target[at]
        yield mutated
    for name in NAMES:
        if name not in doc:
            for value in ANYTHING:
                yield doc | {name: value}


def _binary_result() -> dict[str, Any]:
    # Output whose base64 has no padding (3n bytes), which "=" after a whole group would not
    # change: no example has one.
    doc: dict[str, Any] = json.loads(
        (EXAMPLES / "result" / "valid-binary-output-base64.json").read_bytes()
    )
    for stream, data in (("stdout", b"\xff\xfe\x00"), ("stderr", b"\x00" * 6)):
        doc[stream], doc[f"{stream}_encoding"] = schemas.encode_output(data)
        doc[f"{stream}_bytes"] = len(data)
    return doc


SWEPT: Final = [
    *((p.parent.name, _example_id(p), p) for p in sorted(EXAMPLES.glob("*/valid-*.json"))),
    ("result", "result/binary output of 3n bytes", None),
]


@pytest.mark.parametrize(("kind", "name", "path"), SWEPT, ids=[name for _, name, _ in SWEPT])
def test_every_single_mutation_of_the_valid_examples(
    kind: str, name: str, path: Path | None
) -> None:
    doc = json.loads(path.read_bytes()) if path else _binary_result()
    assert not isinstance(check(kind, doc), SchemaError), name
    for mutated in _single_mutations(doc):
        check(kind, mutated)


# Each mutation the module docstring promises, on a valid example: both directions hold, and
# the verdict is the one stated (the oracle's, or one of the codec's documented extra rules).
DIRECTED: list[tuple[str, str, Any, str | None, str | None]] = [
    ("request", "request_id", RID + "\n", "request_id", "pattern"),
    ("request", "principal", "alice\x00", "principal", "pattern"),
    ("request", "command", " \t\r\n", "command", "pattern"),
    ("request", "targets", ["web01\n"], "targets[0]", "pattern"),
    ("request", "env", {"PATH\n": "/bin"}, "env.PATH\n", "pattern"),
    ("request", "env", {"LD_PRELOAD": "/tmp/x.so"}, "env.LD_PRELOAD", "not"),
    ("request", "labels", {"team": "web\x00"}, "labels.team", "pattern"),
    ("request", "submitted_at", "2024-05-01T12:00:00z", "submitted_at", "pattern"),
    ("request", "submitted_at", "2024-05-01T12:00:00+0200", "submitted_at", "pattern"),
    ("request", "submitted_at", "2024-05-01T12:00:00.1234567890Z", "submitted_at", "pattern"),
    ("request", "submitted_at", "2024-05-01T12:00:00Z\n", "submitted_at", "pattern"),
    ("request", "submitted_at", "2023-02-29T12:00:00Z", "submitted_at", "date-time"),
    ("request", "concurrency", 5.0, "concurrency", "integer"),
    ("request", "max_errors", 5.0, "max_errors", "integer"),
    ("request", "max_errors", "10%\n", "max_errors", "pattern"),
    ("request", "principal", "🚀" * 256, None, None),  # lengths count characters
    ("request", "principal", "🚀" * 257, "principal", "maxLength"),
    ("request", "timeout_s", 5, None, None),
    ("request", "added_in_1_7", {"any": [1]}, None, None),
    ("result", "port", 22.0, "port", "integer"),
    ("result", "host", "web01\n", "host", "pattern"),
    ("result", "exit_signal", "KILL\n", "exit_signal", "pattern"),
    ("result", "stdout_sha256", schemas.EMPTY_SHA256 + "\n", "stdout_sha256", "pattern"),
    ("result", "started_at", "", "started_at", "pattern"),
    ("status", "labels", None, "labels", "type"),
    ("status", "reason", None, "reason", "type"),
    ("status", "counts", None, "counts", "type"),
    ("status", "targets_total", 3.0, "targets_total", "integer"),
    ("status", "at", "2024-05-01T12:00:00.123456789+02:00", None, None),
    ("dead_letter", "value", "YWJj=", "value", "pattern"),
    ("dead_letter", "value", "YQ==\n", "value", "pattern"),
    ("dead_letter", "source_timestamp", None, None, None),
    ("dead_letter", "request_id", None, None, None),
    ("status", "cancelled_by", None, "cancelled_by", "type"),
    ("status", "cancelled_by", "alice\n", None, None),
    ("status", "cancel_reason", "", "cancel_reason", "minLength"),
    ("cancel", "reason", None, None, None),
    ("cancel", "reason", "🚀" * 1024, None, None),  # lengths count characters
    ("cancel", "reason", "🚀" * 1025, "reason", "maxLength"),
    ("cancel", "principal", "alice\x00", "principal", "pattern"),
    ("cancel", "request_id", RID + "\n", "request_id", "pattern"),
    ("cancel", "submitted_at", "2023-02-29T12:00:00Z", "submitted_at", "date-time"),
    ("cancel", "submitted_at", "2024-05-01T12:00:00z", "submitted_at", "pattern"),
]


@pytest.mark.parametrize(("kind", "field", "value", "path", "rule"), DIRECTED)
def test_directed_mutations(
    kind: str, field: str, value: Any, path: str | None, rule: str | None
) -> None:
    name = "valid-accepted.json" if kind == "status" else "valid-minimal.json"
    if kind == "result":
        name = "valid-ok.json"
    doc = json.loads((EXAMPLES / kind / name).read_bytes())
    doc[field] = value
    outcome = check(kind, doc)
    if rule is None:
        assert not isinstance(outcome, SchemaError), outcome
    else:
        assert isinstance(outcome, SchemaError)
        assert (outcome.path, outcome.rule) == (path, rule)


@pytest.mark.parametrize(
    ("stream", "text", "encoding"),
    [
        ("stdout", "YWJj=", "base64"),  # padding after a whole group
        ("stdout", "YWJj====", "base64"),
        ("stderr", "YWJjYWJj==", "base64"),
        ("stdout", "YQ==\n", "base64"),
        ("stdout", "a\x00b", "utf-8"),
    ],
)
def test_output_the_schema_refuses_is_refused(stream: str, text: str, encoding: str) -> None:
    doc = json.loads((EXAMPLES / "result" / "valid-ok.json").read_bytes())
    doc |= {stream: text, f"{stream}_encoding": encoding, f"{stream}_bytes": 3}
    outcome = check("result", doc)
    assert isinstance(outcome, SchemaError)
    assert (outcome.path, outcome.rule) == (stream, "pattern")
