"""Properties: records round-trip exactly; the schema files and the codec cannot disagree."""

from __future__ import annotations

import copy
import json
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastjsonschema
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as conjecture_utils

import schemas
from schemas import SchemaError
from schemas import strategies as S
from schemas.validator import compile_schema

try:
    import hypothesis_jsonschema._from_schema as hjs_internals
    from hypothesis_jsonschema import from_schema
except ImportError:  # pragma: no cover
    pytest.skip("hypothesis-jsonschema is not installed", allow_module_level=True)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
DECODERS: dict[str, Callable[[bytes], schemas.Message]] = {
    "request": schemas.decode_request,
    "result": schemas.decode_result,
    "status": schemas.decode_status,
    "dead_letter": schemas.decode_dead_letter,
}


@SETTINGS
@given(S.messages)
def test_every_record_round_trips(message: schemas.Message) -> None:
    assert schemas.decode(schemas.encode(message)) == message


@SETTINGS
@given(S.results(output=st.binary(max_size=2_000)))
def test_arbitrary_output_bytes_round_trip(result: schemas.Result) -> None:
    assert schemas.decode_result(schemas.encode(result)) == result


def _wire(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()  # stdlib: keeps integers past 64 bits


def _satisfy_cross_field_rules(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Adjust a schema-valid document so it also meets the codec's cross-field rules."""
    doc = copy.deepcopy(doc)
    if kind == "request":
        doc["targets"] = ["web[01-03]", "@canary", "!web02"]
        doc.pop("expires_at", None)
    if kind == "result":
        for stream in ("stdout", "stderr"):
            captured = schemas.decode_output(doc[stream], doc[f"{stream}_encoding"])
            doc[f"{stream}_bytes"] = len(captured) + (1 if doc[f"{stream}_truncated"] else 0)
    if kind == "status" and "counts" in doc and "targets_total" in doc:
        doc["counts"] = dict.fromkeys(doc["counts"], 0) | {"ok": doc["targets_total"]}
    return doc


def _mutations() -> st.SearchStrategy[tuple[str, Any]]:
    samples = [
        "",
        "\x00",
        "ok",
        "2024-05-01T12:00:00Z",
        "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10",
        "10%",
        "A" * 300,
    ]
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.sampled_from(samples),
    )
    return st.tuples(st.text(min_size=1, max_size=20), values)


def _decode_or_error(kind: str, raw: bytes) -> schemas.Message | SchemaError:
    try:
        return DECODERS[kind](raw)
    except SchemaError as error:
        return error


# Generating documents from the schemas is slow (~0.2 s each for a result), so one test per kind
# checks everything on each document: the codec accepts it, and our compiled validator,
# fastjsonschema and the reference jsonschema agree on it and on mutated copies of it.
SCHEMA_SETTINGS = settings(SETTINGS, max_examples=40)


@pytest.mark.parametrize("kind", schemas.KINDS)
def test_schema_documents_are_accepted_and_validators_agree(kind: str) -> None:
    schema = schemas.load_schema(kind)
    ours = compile_schema(schema)
    reference = jsonschema.Draft202012Validator(schema)
    fast = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    fields = sorted(schema["properties"])

    def verdicts(doc: Any) -> tuple[bool, bool, bool]:
        try:
            ours(doc)
            accepted = True
        except SchemaError:
            accepted = False
        try:
            fast(doc)
            fast_accepted = True
        except fastjsonschema.JsonSchemaValueException:
            fast_accepted = False
        return accepted, reference.is_valid(doc), fast_accepted

    @SCHEMA_SETTINGS
    @given(
        DOCUMENTS[kind],
        st.lists(
            st.tuples(st.sampled_from(fields) | st.text(max_size=5), _mutations()), max_size=3
        ),
    )
    def check(doc: dict[str, Any], changes: list[tuple[str, tuple[str, Any]]]) -> None:
        assert verdicts(doc) == (True, True, True)
        record = _decode_or_error(kind, _wire(doc))
        if isinstance(record, SchemaError):
            # A schema-valid document may only break the codec's documented cross-field rules...
            assert record.rule in schemas.CROSS_FIELD_RULES, record
            # ...and once those hold, it is accepted.
            record = DECODERS[kind](_wire(_satisfy_cross_field_rules(kind, doc)))
        assert schemas.decode(schemas.encode(record)) == record

        mutated = copy.deepcopy(doc)
        for field, (sub, value) in changes:
            target = mutated.get(field)
            if isinstance(target, dict) and sub:
                target[sub] = value  # inside objects too: env, labels, counts, error
            else:
                mutated[field] = value
        accepted, reference_accepted, fast_accepted = verdicts(mutated)
        assert accepted == reference_accepted == fast_accepted, mutated

    check()
