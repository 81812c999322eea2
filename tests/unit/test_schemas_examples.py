"""Every example in schemas/examples decodes, or fails exactly as expected-errors.json says."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import schemas
from schemas import SchemaError

EXAMPLES = Path(schemas.__file__).parent / "examples"
EXPECTED: dict[str, dict[str, str]] = {
    k: v
    for k, v in json.loads((EXAMPLES / "expected-errors.json").read_text()).items()
    if k != "$comment"
}
DECODERS: dict[str, Callable[[bytes], schemas.Message]] = {
    "request": schemas.decode_request,
    "result": schemas.decode_result,
    "status": schemas.decode_status,
    "dead_letter": schemas.decode_dead_letter,
}
VALID = sorted(EXAMPLES.glob("*/valid-*.json"))
INVALID = sorted(EXAMPLES.glob("*/invalid-*.json"))


def _key(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _reference_validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schemas.load_schema(kind))


def test_every_kind_has_valid_and_invalid_examples() -> None:
    for kind in schemas.KINDS:
        assert list(EXAMPLES.glob(f"{kind}/valid-*.json")), kind
        assert list(EXAMPLES.glob(f"{kind}/invalid-*.json")), kind
    assert {p.parent.name for p in EXAMPLES.glob("*/*.json")} == set(schemas.KINDS)


def test_expectations_match_the_invalid_examples_one_to_one() -> None:
    assert sorted(EXPECTED) == sorted(_key(p) for p in INVALID)


@pytest.mark.parametrize("path", VALID, ids=_key)
def test_valid_example_decodes_and_round_trips(path: Path) -> None:
    record = DECODERS[path.parent.name](path.read_bytes())
    assert schemas.decode(schemas.encode(record)) == record
    # The reference implementation agrees that the file follows its schema.
    _reference_validator(path.parent.name).validate(json.loads(path.read_bytes()))


@pytest.mark.parametrize("path", INVALID, ids=_key)
def test_invalid_example_fails_with_the_expected_path_and_message(path: Path) -> None:
    expected = EXPECTED[_key(path)]
    with pytest.raises(SchemaError) as caught:
        DECODERS[path.parent.name](path.read_bytes())
    error = caught.value
    assert (error.path, error.rule) == (expected["path"], expected["rule"])
    assert expected["message"] in error.problem
    assert str(error) == (f"{error.path}: {error.problem}" if error.path else error.problem)


@pytest.mark.parametrize("path", INVALID, ids=_key)
def test_reference_validator_agrees_on_schema_level_failures(path: Path) -> None:
    expected = EXPECTED[_key(path)]
    try:
        doc: Any = json.loads(path.read_bytes())
    except json.JSONDecodeError:
        assert expected["rule"] == "json"
        return
    valid = _reference_validator(path.parent.name).is_valid(doc)
    # Cross-field rules are the codec's own (documented); everything else is in the schema file.
    schema_level = expected["rule"] not in schemas.CROSS_FIELD_RULES
    assert valid is not schema_level
