"""The validator compiler's shortcuts are exact: remembered names, readers, fast patterns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import SchemaError
from schemas.errors import SchemaDefinitionError
from schemas.validator import compile_reader, compile_schema

LABELS = {
    "type": "object",
    "propertyNames": {"maxLength": 5, "pattern": "^[a-z]+$"},
    "additionalProperties": {"type": "string"},
}


def _accepts(validate: Any, doc: Any) -> bool:
    try:
        validate(doc)
    except SchemaError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.text(alphabet="abcZ-", max_size=7) | st.sampled_from(["a", "ab", "abcdef"]),
            st.just(""),
            max_size=4,
        ),
        max_size=30,
    )
)
def test_remembered_property_names_decide_as_the_reference(docs: list[dict[str, str]]) -> None:
    validate = compile_schema(LABELS)  # one validator, so names are remembered across documents
    reference = jsonschema.Draft202012Validator(LABELS)
    for doc in docs:
        assert _accepts(validate, doc) == reference.is_valid(doc), doc


def test_remembering_is_bounded_and_never_lets_a_bad_name_through() -> None:
    validate = compile_schema({"type": "object", "propertyNames": {"pattern": "^[a-z0-9]+$"}})
    for n in range(10_000):
        validate({f"k{n}": 1})
    cells = [c.cell_contents for c in getattr(validate, "__closure__", None) or ()]
    (seen,) = [c for c in cells if isinstance(c, set)]
    assert len(seen) == 4_096
    with pytest.raises(SchemaError, match="K1"):
        validate({"K1": 1})
    # Non-string names (possible in dicts built in Python) are checked every time.
    assert not _accepts(compile_schema({"propertyNames": {"type": "string"}}), {1: 1})


def test_a_reader_returns_the_values_it_validated() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {}},
    }
    read = compile_reader(schema, ("b", "a"))
    assert read({"a": 1, "b": "x", "c": None}) == ("x", 1)
    with pytest.raises(SchemaError, match="a: must be an integer"):
        read({"a": "1", "b": "x"})
    assert compile_schema(schema)({"a": 1, "b": "x"}) is None
    for names in (("c",), ("zz",)):  # optional or unknown: the value may not exist
        with pytest.raises(SchemaDefinitionError):
            compile_reader(schema, names)


def test_the_result_reader_reads_what_the_document_holds() -> None:
    doc = orjson.loads(
        (Path(schemas.__file__).parent / "examples" / "result" / "valid-ok.json").read_bytes()
    )
    names = tuple(schemas.load_schema("result")["required"])
    assert compile_reader(schemas.load_schema("result"), names)(doc) == tuple(doc[n] for n in names)


@pytest.mark.parametrize(
    "text",
    [
        "é" * 64,
        "０" * 64,
        "a" * 63 + "é",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85\U0001f600",
    ],
)
def test_sha256_checks_refuse_non_ascii_digits_and_letters(text: str) -> None:
    validate = compile_schema({"pattern": "^[0-9a-f]{64}$"})
    assert not _accepts(validate, text)
    assert _accepts(validate, "0123456789abcdef" * 4)
