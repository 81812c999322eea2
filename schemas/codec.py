"""One codec for the wire contract: records ⇄ JSON bytes (orjson), validated both ways.

decode_<kind>(raw) parses, checks the schema id, validates against schemas/<kind>.schema.json
(compiled once at import), builds the record and applies the few cross-field rules a JSON Schema
cannot state (listed in CROSS_FIELD_RULES and schemas/README.md). Every failure is one SchemaError
whose message names the field path and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any, Final

import orjson

from schemas.documents import (
    dead_letter_doc,
    dead_letter_from_doc,
    request_doc,
    request_from_doc,
    result_doc,
    result_from_doc,
    status_doc,
    status_from_doc,
)
from schemas.errors import SchemaError
from schemas.records import (
    DEAD_LETTER_SCHEMA,
    REQUEST_SCHEMA,
    RESULT_SCHEMA,
    STATUS_SCHEMA,
    DeadLetter,
    Message,
    Request,
    Result,
    Status,
)
from schemas.rules import CROSS_FIELD_RULES, check_request, check_result, check_status, no_check
from schemas.validator import Validator, compile_schema, json_type

RawMessage = bytes | bytearray | memoryview | str | None

KINDS: Final = ("request", "result", "status", "dead_letter")
SCHEMA_IDS: Final = {
    "request": REQUEST_SCHEMA,
    "result": RESULT_SCHEMA,
    "status": STATUS_SCHEMA,
    "dead_letter": DEAD_LETTER_SCHEMA,
}
_SCHEMA_ID = re.compile(r"fleetrun\.([a-z_]+)/([0-9]+)\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def load_schema(kind: str) -> dict[str, Any]:
    """The parsed JSON Schema document for `kind` (request, result, status, dead_letter)."""
    data = resources.files("schemas").joinpath(f"{kind}.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(data)
    return schema


_VALIDATORS: Final[dict[str, Validator]] = {
    kind: compile_schema(load_schema(kind)) for kind in KINDS
}
_validate_result = _VALIDATORS["result"]


# --- public API ------------------------------------------------------------------------------


def encode(msg: Message, *, validate: bool = True) -> bytes:
    """Serialise a record to JSON bytes; with `validate`, refuse what the contract forbids."""
    kind, to_doc, check = _ENCODERS[type(msg)]
    doc = to_doc(msg)
    if validate:
        _VALIDATORS[kind](doc)
        check(msg)
    try:
        return orjson.dumps(doc)
    except TypeError as exc:  # only reachable with validate=False
        raise SchemaError("", f"cannot be written as JSON ({exc})", "json") from None


def as_document(msg: Message) -> dict[str, Any]:
    """The JSON document (a dict of JSON values) that `encode` would write for `msg`."""
    return _ENCODERS[type(msg)][1](msg)


def decode_request(raw: RawMessage) -> Request:
    """Parse and validate a fleetrun.request/1 message."""
    doc = _load(raw, REQUEST_SCHEMA)
    _VALIDATORS["request"](doc)
    request = request_from_doc(doc)
    check_request(request)
    return request


def decode_result(raw: RawMessage) -> Result:
    """Parse and validate a fleetrun.result/1 message."""
    # The sink's hot path, so _load is inlined for the common case.
    try:
        doc = orjson.loads(raw)  # type: ignore[arg-type]  # None raises TypeError: below
    except (orjson.JSONDecodeError, TypeError):
        doc = None
    if type(doc) is not dict or doc.get("schema") != RESULT_SCHEMA:
        doc = _load(raw, RESULT_SCHEMA)  # raises the precise error
    _validate_result(doc)
    return result_from_doc(doc)  # applies the cross-field checks too


def decode_status(raw: RawMessage) -> Status:
    """Parse and validate a fleetrun.status/1 message."""
    doc = _load(raw, STATUS_SCHEMA)
    _VALIDATORS["status"](doc)
    status = status_from_doc(doc)
    check_status(status)
    return status


def decode_dead_letter(raw: RawMessage) -> DeadLetter:
    """Parse and validate a fleetrun.dead_letter/1 message."""
    doc = _load(raw, DEAD_LETTER_SCHEMA)
    _VALIDATORS["dead_letter"](doc)
    return dead_letter_from_doc(doc)


def decode(raw: RawMessage) -> Message:
    """Decode any fleetrun message, choosing the kind from its schema field."""
    doc = _load_object(raw)
    schema = doc.get("schema")
    m = _SCHEMA_ID.match(schema) if isinstance(schema, str) else None
    if m is None or m.group(1) not in _DECODERS:
        raise SchemaError(
            "schema",
            f"{_show(schema)} is not a fleetrun schema id; "
            f"expected one of {', '.join(SCHEMA_IDS.values())}",
            "schema",
        )
    return _DECODERS[m.group(1)](raw)


def peek_schema(raw: RawMessage) -> str | None:
    """The `schema` field of a message if it is JSON with one, without validating anything."""
    doc = _loads_or_none(raw)
    schema = doc.get("schema") if isinstance(doc, dict) else None
    return schema if isinstance(schema, str) else None


def peek_request_id(raw: RawMessage) -> str | None:
    """The request_id of a message, even an invalid one, when one can be read; else None."""
    doc = _loads_or_none(raw)
    request_id = doc.get("request_id") if isinstance(doc, dict) else None
    if isinstance(request_id, str) and _UUID.match(request_id):
        return request_id
    return None


# --- reading ---------------------------------------------------------------------------------


def _loads_or_none(raw: RawMessage) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _load(raw: RawMessage, expected: str) -> dict[str, Any]:
    doc = _load_object(raw)
    if doc.get("schema") != expected:
        raise _schema_mismatch(doc.get("schema"), expected)
    return doc


def _load_object(raw: RawMessage) -> dict[str, Any]:
    if raw is None:
        raise SchemaError("", "is empty: the Kafka record has no value", "json")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError("", f"is not valid JSON ({exc})", "json") from None
    if type(doc) is not dict:
        raise SchemaError("", f"must be a JSON object, not {json_type(doc)}", "type")
    return doc


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else json_type(value)


def _schema_mismatch(schema: Any, expected: str) -> SchemaError:
    if schema is None:
        return SchemaError(
            "schema",
            f'is required: every fleetrun message names its schema, here "{expected}"',
            "schema",
        )
    if not isinstance(schema, str):
        return SchemaError(
            "schema", f'must be a string such as "{expected}", not {json_type(schema)}', "schema"
        )
    m = _SCHEMA_ID.match(schema)
    if m and expected.startswith(f"fleetrun.{m.group(1)}/"):
        return SchemaError(
            "schema",
            f'unsupported schema version "{schema}": this consumer understands {expected}',
            "schema-version",
        )
    if m:
        return SchemaError(
            "schema",
            f'is "{schema}" where {expected} was expected (a message on the wrong topic?)',
            "schema",
        )
    return SchemaError(
        "schema", f'"{schema}" is not a fleetrun schema id; expected "{expected}"', "schema"
    )


_ENCODERS: Final[dict[type, tuple[str, Callable[[Any], dict[str, Any]], Callable[[Any], None]]]] = {
    Request: ("request", request_doc, check_request),
    Result: ("result", result_doc, check_result),
    Status: ("status", status_doc, check_status),
    DeadLetter: ("dead_letter", dead_letter_doc, no_check),
}
_DECODERS: Final[dict[str, Callable[[RawMessage], Message]]] = {
    "request": decode_request,
    "result": decode_result,
    "status": decode_status,
    "dead_letter": decode_dead_letter,
}


__all__ = [
    "CROSS_FIELD_RULES",
    "KINDS",
    "SCHEMA_IDS",
    "RawMessage",
    "as_document",
    "decode",
    "decode_dead_letter",
    "decode_request",
    "decode_result",
    "decode_status",
    "encode",
    "load_schema",
    "peek_request_id",
    "peek_schema",
]
