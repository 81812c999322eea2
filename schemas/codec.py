"""One codec for the wire contract: records ⇄ JSON bytes, with msgspec, validated both ways.

decode_<kind>(raw) is one msgspec decode: it parses, checks the schema id (the records' tag),
every field's bound (schemas.fields) and the records' own rules (schemas.records), in C except
for those rules. Every failure is one SchemaError naming the field path, the problem and the
rule (schemas.explain). encode() writes a record and, by default, proves it decodes.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Final, TypeVar

import msgspec
import orjson

from schemas.chunks import OUTPUT_SCHEMA, Output
from schemas.errors import SchemaError
from schemas.explain import explain, json_type
from schemas.records import (
    CANCEL_SCHEMA,
    DEAD_LETTER_SCHEMA,
    REQUEST_SCHEMA,
    RESULT_SCHEMA,
    STATUS_SCHEMA,
    Cancel,
    DeadLetter,
    Message,
    Request,
    Result,
    Status,
)
from schemas.shard import SHARD_SCHEMA, Shard

RawMessage = bytes | bytearray | memoryview | str | None
M = TypeVar("M", Request, Result, Status, DeadLetter, Cancel, Output, Shard)

KINDS: Final = ("request", "result", "status", "dead_letter", "cancel", "output", "shard")
SCHEMA_IDS: Final = {
    "request": REQUEST_SCHEMA,
    "result": RESULT_SCHEMA,
    "status": STATUS_SCHEMA,
    "dead_letter": DEAD_LETTER_SCHEMA,
    "cancel": CANCEL_SCHEMA,
    "output": OUTPUT_SCHEMA,
    "shard": SHARD_SCHEMA,
}
RECORD_TYPES: Final[dict[str, type[Message]]] = {
    "request": Request,
    "result": Result,
    "status": Status,
    "dead_letter": DeadLetter,
    "cancel": Cancel,
    "output": Output,
    "shard": Shard,
}
# The rules beyond the schema files (schemas/README.md): a document valid against its schema
# file may still be refused for these, and only these.
CROSS_FIELD_RULES: Final = frozenset(
    {
        "date-time",
        "expires_at",
        "targets",
        "output",
        "output_size",
        "truncated",
        "counts",
        "integer",
        "shard",
    }
)
_SCHEMA_ID: Final = re.compile(r"fleetrun\.([a-z_]+)/([0-9]+)\Z")
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_ABSENT: Final[Any] = object()  # a document's missing `schema`, told apart from `"schema": null`

_encoder: Final = msgspec.json.Encoder()
# One decoder for every kind: a union of tagged records makes msgspec require the `schema` field
# (a lone tagged record would accept a message without it) at no extra cost.
_decoder: Final = msgspec.json.Decoder(Message)


def load_schema(kind: str) -> dict[str, Any]:
    """The parsed JSON Schema document for `kind` (request, result, status, dead_letter,
    cancel, output)."""
    data = resources.files("schemas").joinpath(f"{kind}.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(data)
    return schema


def decode_request(raw: RawMessage) -> Request:
    """Parse and validate a fleetrun.request/1 message."""
    return _decode(raw, Request)


def decode_result(raw: RawMessage) -> Result:
    """Parse and validate a fleetrun.result/1 message."""
    # _decode, inline: the sink decodes every result.
    try:
        msg = _decoder.decode(raw)  # type: ignore[arg-type]  # None raises TypeError
    except (msgspec.MsgspecError, TypeError) as exc:
        raise _refusal(exc, raw, Result) from None
    if type(msg) is not Result:
        raise _schema_mismatch(msg.SCHEMA, RESULT_SCHEMA)
    return msg


def decode_status(raw: RawMessage) -> Status:
    """Parse and validate a fleetrun.status/1 message."""
    return _decode(raw, Status)


def decode_dead_letter(raw: RawMessage) -> DeadLetter:
    """Parse and validate a fleetrun.dead_letter/1 message."""
    return _decode(raw, DeadLetter)


def decode_cancel(raw: RawMessage) -> Cancel:
    """Parse and validate a fleetrun.cancel/1 message."""
    return _decode(raw, Cancel)


def decode_output_chunk(raw: RawMessage) -> Output:
    """Parse and validate a fleetrun.output/1 message."""
    return _decode(raw, Output)


def decode_shard(raw: RawMessage) -> Shard:
    """Parse and validate a fleetrun.shard/1 message."""
    return _decode(raw, Shard)


def decode(raw: RawMessage) -> Message:
    """Decode any fleetrun message, choosing the kind from its schema field."""
    try:
        return _decoder.decode(raw)  # type: ignore[arg-type]  # None raises TypeError
    except (msgspec.MsgspecError, TypeError, UnicodeEncodeError) as exc:
        doc = _document(raw, exc)
        schema = doc.get("schema", _ABSENT)
        m = _SCHEMA_ID.match(schema) if isinstance(schema, str) else None
        if schema is _ABSENT:
            raise SchemaError(
                "schema",
                "is required: every fleetrun message names its schema, one of "
                f"{', '.join(SCHEMA_IDS.values())}",
                "schema",
            ) from None
        if m is None or m.group(1) not in RECORD_TYPES:
            raise SchemaError(
                "schema",
                f"{_show(schema)} is not a fleetrun schema id; "
                f"expected one of {', '.join(SCHEMA_IDS.values())}",
                "schema",
            ) from None
        raise _refusal(exc, raw, RECORD_TYPES[m.group(1)]) from None


def _decode(raw: RawMessage, record_type: type[M]) -> M:
    try:
        msg = _decoder.decode(raw)  # type: ignore[arg-type]  # None raises TypeError
    # TypeError: `raw` is None. UnicodeEncodeError: `raw` is a str holding an unpaired surrogate.
    except (msgspec.MsgspecError, TypeError, UnicodeEncodeError) as exc:
        raise _refusal(exc, raw, record_type) from None
    if type(msg) is not record_type:
        raise _schema_mismatch(msg.SCHEMA, record_type.SCHEMA)
    return msg


def encode(msg: Message, *, validate: bool = True) -> bytes:
    """Serialise a record to JSON bytes; with `validate`, refuse what the contract forbids.

    Records built in Python have passed their own rules, but not their field bounds (msgspec
    checks those while decoding): `validate` decodes the bytes once to prove them.
    """
    raw = _write(msg)
    if validate:
        try:
            _decoder.decode(raw)
        except msgspec.MsgspecError as exc:
            raise _refusal(exc, raw, type(msg)) from None
    return raw


def as_document(msg: Message) -> dict[str, Any]:
    """The JSON document (a dict of JSON values) that `encode` would write for `msg`."""
    doc: dict[str, Any] = orjson.loads(_write(msg))
    return doc


def _write(msg: Message) -> bytes:
    try:
        return _encoder.encode(msg)
    except UnicodeEncodeError:
        # A record built in code may hold an unpaired surrogate (text decoded with
        # surrogateescape, e.g. a label from argv); UTF-8 JSON cannot carry one.
        path = _surrogate_at(msgspec.to_builtins(msg), "")
        raise SchemaError(
            path or "",
            "holds an unpaired surrogate (U+D800 to U+DFFF), which UTF-8 JSON cannot carry",
            "json",
        ) from None


def _surrogate_at(value: Any, path: str) -> str | None:
    """The path of the first string in `value` that UTF-8 cannot encode, or None."""
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _surrogate_at(key, path) or _surrogate_at(item, f"{path}.{key}".lstrip("."))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _surrogate_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def peek_request_id(raw: RawMessage) -> str | None:
    """The request_id of a message, even an invalid one, when one can be read; else None."""
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    request_id = doc.get("request_id") if isinstance(doc, dict) else None
    if isinstance(request_id, str) and _UUID.match(request_id):
        return request_id
    return None


# --- refusals ----------------------------------------------------------------------------------


def _refusal(exc: Exception, raw: RawMessage, record_type: type[Any]) -> SchemaError:
    """The one SchemaError for a message msgspec refused as `record_type`."""
    doc = _document(raw, exc)
    expected = record_type.SCHEMA
    schema = doc.get("schema", _ABSENT)
    if schema != expected:
        return _schema_mismatch(schema, expected)
    if not isinstance(exc, msgspec.MsgspecError):  # pragma: no cover - TypeError is for None
        raise exc
    return explain(exc, doc, record_type)


def _document(raw: RawMessage, exc: Exception) -> dict[str, Any]:
    """The message parsed again (it was refused), or the SchemaError for not being an object."""
    if raw is None:
        raise SchemaError("", "is empty: the Kafka record has no value", "json")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise SchemaError("", f"is not valid JSON ({error})", "json") from None
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        # orjson read what msgspec could not
        raise SchemaError("", f"is not valid JSON ({exc})", "json")
    if type(doc) is not dict:
        raise SchemaError("", f"must be a JSON object, not {json_type(doc)}", "type")
    return doc


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else json_type(value)


def _schema_mismatch(schema: Any, expected: str) -> SchemaError:
    if schema is _ABSENT:
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


__all__ = [
    "CROSS_FIELD_RULES",
    "KINDS",
    "RECORD_TYPES",
    "SCHEMA_IDS",
    "RawMessage",
    "as_document",
    "decode",
    "decode_cancel",
    "decode_dead_letter",
    "decode_output_chunk",
    "decode_request",
    "decode_result",
    "decode_shard",
    "decode_status",
    "encode",
    "load_schema",
    "peek_request_id",
]
