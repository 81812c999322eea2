"""The canonical bytes a request signature covers: RFC 8785 of the request without `signature`,
checked against the committed test vector."""

from __future__ import annotations

import json

import pytest

import schemas
from schemas import SchemaError, canonical_bytes
from tests.support.contract import EXAMPLES

VECTORS = EXAMPLES / "signing"


def test_the_vector_request_has_the_vector_canonical_bytes() -> None:
    document = json.loads((VECTORS / "request.json").read_bytes())
    assert "signature" in document
    assert canonical_bytes(document) == (VECTORS / "request.canonical").read_bytes()


def test_the_vector_request_is_a_valid_request() -> None:
    request = schemas.decode_request((VECTORS / "request.json").read_bytes())
    assert request.signature == (VECTORS / "request.ed25519.sig").read_text()


@pytest.mark.parametrize(
    ("document", "canonical"),
    [
        ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),
        ({"t": 30.0, "u": 5.5}, b'{"t":30,"u":5.5}'),
        ({"s": "é\u2028\x1f"}, '{"s":"é\u2028\\u001f"}'.encode()),
        ({"signature": "x", "k": None}, b'{"k":null}'),
    ],
)
def test_canonical_form(document: dict[str, object], canonical: bytes) -> None:
    assert canonical_bytes(document) == canonical


def test_what_has_no_canonical_form_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="RFC 8785"):
        canonical_bytes({"n": 2**60})
