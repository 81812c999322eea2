"""Every example in schemas/examples decodes, or fails exactly as expected-errors.json says.

The oracle the contract tests compare the records with (jsonschema, reading `pattern` the way
ECMA-262 does) is in tests/support/contract.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import schemas
from schemas import SchemaError
from tests.support.contract import DECODERS, EXAMPLES, EcmaValidator, oracle

EXPECTED: dict[str, dict[str, str]] = {
    k: v
    for k, v in json.loads((EXAMPLES / "expected-errors.json").read_text()).items()
    if k != "$comment"
}
VALID = sorted(EXAMPLES.glob("*/valid-*.json"))
INVALID = sorted(EXAMPLES.glob("*/invalid-*.json"))


def _key(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_the_oracle_reads_dollar_as_ecma_does() -> None:
    validator = EcmaValidator({"type": "string", "pattern": "^[a-z]+$"})
    assert validator.is_valid("web")
    assert not validator.is_valid("web\n")
    # ...where the stock validator, reading the pattern as Python does, takes it.
    assert jsonschema.Draft202012Validator({"pattern": "^[a-z]+$"}).is_valid("web\n")


def test_every_kind_has_valid_and_invalid_examples() -> None:
    for kind in schemas.KINDS:
        assert list(EXAMPLES.glob(f"{kind}/valid-*.json")), kind
        assert list(EXAMPLES.glob(f"{kind}/invalid-*.json")), kind
    # signing/ holds the signature test vectors (schemas/README.md, "Signed requests").
    kinds = {p.parent.name for p in EXAMPLES.glob("*/*.json")} - {"signing"}
    assert kinds == set(schemas.KINDS)


def test_expectations_match_the_invalid_examples_one_to_one() -> None:
    assert sorted(EXPECTED) == sorted(_key(p) for p in INVALID)


@pytest.mark.parametrize("path", VALID, ids=_key)
def test_valid_example_decodes_keeps_its_values_and_round_trips(path: Path) -> None:
    kind = path.parent.name
    doc = json.loads(path.read_bytes())
    record = DECODERS[kind](path.read_bytes())
    assert schemas.decode(path.read_bytes()) == record
    assert schemas.decode(schemas.encode(record)) == record
    assert oracle(kind).is_valid(doc)
    # Records hold the wire form: every field the record knows comes back as written (base64
    # bytes are compared as bytes; a number may come back as 60.0 for 60, which is equal).
    written = schemas.as_document(record)
    for name, value in doc.items():
        if name not in written:
            assert name not in type(record).__struct_fields__, name  # only unknown fields drop
        elif name not in ("key", "value"):
            assert written[name] == value, name


@pytest.mark.parametrize("path", INVALID, ids=_key)
def test_invalid_example_fails_with_the_expected_path_and_message(path: Path) -> None:
    expected = EXPECTED[_key(path)]
    kind = path.parent.name
    with pytest.raises(SchemaError) as caught:
        DECODERS[kind](path.read_bytes())
    error = caught.value
    assert (error.path, error.rule) == (expected["path"], expected["rule"])
    assert expected["message"] in error.problem
    assert str(error) == (f"{error.path}: {error.problem}" if error.path else error.problem)
    if _names_kind(path, kind):
        # The generic decoder, choosing the kind from `schema`, fails the same way.
        with pytest.raises(SchemaError) as generic:
            schemas.decode(path.read_bytes())
        assert generic.value.__reduce__() == error.__reduce__()


def _names_kind(path: Path, kind: str) -> bool:
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("schema") == schemas.SCHEMA_IDS[kind]


@pytest.mark.parametrize("path", INVALID, ids=_key)
def test_the_oracle_refuses_exactly_the_schema_level_failures(path: Path) -> None:
    expected = EXPECTED[_key(path)]
    try:
        doc: Any = json.loads(path.read_bytes())
    except json.JSONDecodeError:
        assert expected["rule"] == "json"
        return
    valid = oracle(path.parent.name).is_valid(doc)
    # The extra rules are the codec's own (documented); everything else is in the schema file.
    assert valid is (expected["rule"] in schemas.CROSS_FIELD_RULES)
