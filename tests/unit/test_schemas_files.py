"""The JSON Schema files: well-formed, documented, portable, and in step with the Python side.

The records restate the files in Python (schemas.fields, schemas.records). Below, each record
type is translated back into the JSON Schema keywords it implies (msgspec Meta → minLength,
maximum...; Pattern → pattern; Literal → enum; defaults, required fields) and compared with its
schema file, field by field: neither side can change without the other.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Union

import jsonschema
import msgspec
import pytest

import schemas
from schemas import fields, limits, records
from schemas.environment import DENIED_ENV_PATTERN
from schemas.patterns import NotPattern, Pattern

KINDS = list(schemas.KINDS)
# The keywords the files may use: those whose meaning is the same in draft-07 (AsyncAPI's schema
# format) and 2020-12, which every mainstream validator implements. No prefixItems,
# unevaluated*, dependent*, $anchor, $dynamicRef.
VALIDATION_KEYWORDS: Final = frozenset(
    {
        "type", "const", "enum", "required", "properties", "additionalProperties",
        "propertyNames", "items", "minItems", "maxItems", "minLength", "maxLength", "minimum",
        "maximum", "pattern", "maxProperties", "allOf", "if", "then", "else", "not", "$ref",
    }
)  # fmt: skip
ANNOTATION_KEYWORDS: Final = frozenset(
    {"$schema", "$id", "title", "description", "default", "format", "errorMessage", "$defs"}
)
BASE64: Final = schemas.load_schema("result")["$defs"]["base64"]["pattern"]


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def _properties(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, node in _walk(schemas.load_schema(kind)):
        if path.endswith("/properties"):
            yield from ((f"{path}/{k}", v) for k, v in node.items())


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_json_schema_2020_12(kind: str) -> None:
    schema = schemas.load_schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == schemas.SCHEMA_IDS[kind]
    assert schema["properties"]["schema"]["const"] == schemas.SCHEMA_IDS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_has_a_description(kind: str) -> None:
    schema = schemas.load_schema(kind)
    assert schema["description"]
    top_level = set(schema["properties"])
    for path, prop in _properties(kind):
        # then/else branches refine fields already described at the top level
        if "/allOf/" in path:
            assert path.rsplit("/", 1)[1] in top_level, path
            continue
        assert prop.get("description"), f"{kind}: {path} has no description"
    for name, definition in schema.get("$defs", {}).items():
        assert definition.get("description"), f"{kind}: $defs/{name} has no description"


@pytest.mark.parametrize("kind", KINDS)
def test_only_portable_keywords(kind: str) -> None:
    schema = schemas.load_schema(kind)
    for path, node in _walk(schema):
        if path.endswith(("/properties", "/$defs")) or path == "/$defs":
            continue
        unknown = set(node) - VALIDATION_KEYWORDS - ANNOTATION_KEYWORDS
        assert not unknown, f"{kind}: {path} uses {unknown}"
        if "$ref" in node:
            assert set(node) - {"$ref"} <= ANNOTATION_KEYWORDS, (
                f"{kind}: {path}: keywords beside $ref"
            )


@pytest.mark.parametrize("kind", KINDS)
def test_patterns_read_the_same_in_every_language(kind: str) -> None:
    for path, node in _walk(schemas.load_schema(kind)):
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            # No classes whose meaning differs between engines; `$` only at the very end.
            assert not re.search(r"\\[dDwWsSbB]", pattern), f"{kind}: {path}: {pattern}"
            assert "$" not in pattern[:-1], f"{kind}: {path}: {pattern}"
            re.compile(pattern)


def test_shared_definitions_are_identical_in_every_file() -> None:
    seen: dict[str, tuple[str, Any]] = {}
    for kind in KINDS:
        for name, definition in schemas.load_schema(kind).get("$defs", {}).items():
            if name in seen:
                assert definition == seen[name][1], (
                    f"$defs/{name} differs between {seen[name][0]} and {kind}"
                )
            else:
                seen[name] = (kind, definition)


def test_nullable_definitions_match_their_base() -> None:
    defs = {**schemas.load_schema("request")["$defs"], **schemas.load_schema("result")["$defs"]}
    assert defs["optional_timestamp"]["pattern"] == defs["timestamp"]["pattern"]
    dead_letter = schemas.load_schema("dead_letter")["$defs"]
    assert defs["optional_error"]["properties"] == dead_letter["error"]["properties"]
    assert defs["optional_error"]["required"] == dead_letter["error"]["required"]
    assert dead_letter["optional_base64"]["pattern"] == BASE64


def _get(kind: str, pointer: str) -> Any:
    node: Any = schemas.load_schema(kind)
    for part in pointer.strip("/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


LIMITS = [
    ("request", "properties/command/maxLength", limits.MAX_COMMAND_CHARS),
    ("request", "properties/principal/maxLength", limits.MAX_PRINCIPAL_CHARS),
    ("request", "properties/targets/maxItems", limits.MAX_TARGET_EXPRESSIONS),
    ("request", "properties/targets/items/maxLength", limits.MAX_TARGET_EXPRESSION_CHARS),
    ("request", "properties/env/maxProperties", limits.MAX_ENV_VARS),
    ("request", "properties/env/propertyNames/maxLength", limits.MAX_ENV_NAME_CHARS),
    ("request", "properties/env/propertyNames/pattern", limits.ENV_NAME_PATTERN),
    ("request", "properties/env/propertyNames/not/pattern", DENIED_ENV_PATTERN),
    ("request", "properties/env/additionalProperties/maxLength", limits.MAX_ENV_VALUE_CHARS),
    ("request", "properties/timeout_s/minimum", limits.MIN_TIMEOUT_S),
    ("request", "properties/timeout_s/maximum", limits.MAX_TIMEOUT_S),
    ("request", "properties/timeout_s/default", limits.DEFAULT_TIMEOUT_S),
    ("request", "properties/connect_timeout_s/minimum", limits.MIN_CONNECT_TIMEOUT_S),
    ("request", "properties/connect_timeout_s/maximum", limits.MAX_CONNECT_TIMEOUT_S),
    ("request", "properties/connect_timeout_s/default", limits.DEFAULT_CONNECT_TIMEOUT_S),
    ("request", "properties/concurrency/maximum", limits.MAX_CONCURRENCY),
    ("request", "properties/concurrency/default", limits.DEFAULT_CONCURRENCY),
    ("request", "properties/max_errors/maximum", limits.MAX_TARGETS),
    ("request", "properties/max_errors/pattern", limits.MAX_ERRORS_PERCENT_PATTERN),
    ("request", "properties/max_output_bytes/maximum", limits.MAX_OUTPUT_BYTES),
    ("request", "properties/max_output_bytes/default", limits.DEFAULT_MAX_OUTPUT_BYTES),
    ("request", "properties/retries/maximum", limits.MAX_RETRIES),
    ("request", "properties/retries/default", limits.DEFAULT_RETRIES),
    ("request", "$defs/labels/maxProperties", limits.MAX_LABELS),
    ("request", "$defs/labels/propertyNames/maxLength", limits.MAX_LABEL_KEY_CHARS),
    ("request", "$defs/labels/additionalProperties/maxLength", limits.MAX_LABEL_VALUE_CHARS),
    ("result", "properties/host/maxLength", limits.MAX_HOST_CHARS),
    ("result", "properties/user/maxLength", limits.MAX_USER_CHARS),
    ("result", "properties/attempt/maximum", limits.MAX_ATTEMPT),
    ("result", "properties/exit_status/maximum", limits.MAX_EXIT_STATUS),
    ("result", "properties/stdout_bytes/maximum", limits.MAX_SAFE_INTEGER),
    ("result", "properties/duration_ms/maximum", limits.MAX_SAFE_INTEGER),
    ("result", "$defs/output/maxLength", limits.MAX_OUTPUT_WIRE_CHARS),
    ("result", "$defs/instance/maxLength", limits.MAX_INSTANCE_CHARS),
    ("result", "$defs/optional_error/properties/type/maxLength", limits.MAX_ERROR_TYPE_CHARS),
    ("result", "$defs/optional_error/properties/message/maxLength", limits.MAX_ERROR_MESSAGE_CHARS),
    ("status", "properties/reason/maxLength", limits.MAX_REASON_CHARS),
    ("status", "properties/targets_total/maximum", limits.MAX_TARGETS),
    ("status", "properties/command/maxLength", limits.MAX_COMMAND_CHARS),
    ("status", "$defs/count/maximum", limits.MAX_TARGETS),
    ("dead_letter", "properties/partition/maximum", limits.MAX_PARTITION),
    ("dead_letter", "properties/offset/maximum", limits.MAX_SAFE_INTEGER),
    ("status", "properties/cancelled_by/maxLength", limits.MAX_PRINCIPAL_CHARS),
    ("status", "properties/cancel_reason/maxLength", limits.MAX_CANCEL_REASON_CHARS),
    ("cancel", "properties/principal/maxLength", limits.MAX_PRINCIPAL_CHARS),
    ("cancel", "properties/reason/maxLength", limits.MAX_CANCEL_REASON_CHARS),
]


@pytest.mark.parametrize(
    ("kind", "pointer", "value"), LIMITS, ids=[f"{k}:{p}" for k, p, _ in LIMITS]
)
def test_schema_files_agree_with_limits(kind: str, pointer: str, value: object) -> None:
    assert _get(kind, pointer) == value


# --- the records, translated back into JSON Schema ---------------------------------------------

_DROPPED: Final = ANNOTATION_KEYWORDS - {"$defs"}  # what says nothing about validity


def schema_side(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A schema node as the records must restate it: references resolved, annotations dropped,
    `type` always a list, `required` sorted."""
    if "$ref" in node:
        node = defs[node["$ref"].removeprefix("#/$defs/")] | {
            k: v for k, v in node.items() if k != "$ref"
        }
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key in ("$defs", "allOf"):
            continue
        if key == "properties":
            out[key] = {name: schema_side(prop, defs) for name, prop in value.items()}
        elif key in ("items", "propertyNames", "additionalProperties", "not") and isinstance(
            value, dict
        ):
            out[key] = schema_side(value, defs)
        elif key == "type":
            out[key] = [value] if isinstance(value, str) else list(value)
        elif key == "required":
            out[key] = sorted(value)
        else:
            out[key] = value
    return out


_SCALARS: Final[dict[Any, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def python_side(annotation: Any) -> dict[str, Any]:
    """The JSON Schema keywords a record field type implies."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extras = typing.get_args(annotation)
        out = python_side(inner)
        kind = out["type"][0]
        size = {"string": "Length", "array": "Items", "object": "Properties"}.get(kind, "")
        for extra in extras:
            if isinstance(extra, msgspec.Meta):
                bounds = {
                    f"min{size}": extra.min_length,
                    f"max{size}": extra.max_length,
                    "minimum": extra.ge,
                    "maximum": extra.le,
                }
                # Not used by any field, so not translated: fail if one appears.
                assert (extra.gt, extra.lt, extra.pattern) == (None, None, None)
                out |= {k: v for k, v in bounds.items() if v is not None}
            elif isinstance(extra, NotPattern):  # a pattern the value must not match
                assert "not" not in out
                out["not"] = {"pattern": extra.source}
            elif isinstance(extra, Pattern):
                assert "pattern" not in out
                out["pattern"] = extra.source
        return out
    if origin in (Union, types.UnionType):
        # UnsetType: a field that may be absent, never null; the schema says so by not
        # listing it as required.
        members = [m for m in typing.get_args(annotation) if m is not msgspec.UnsetType]
        merged: dict[str, Any] = {"type": []}
        for member in members:
            described = python_side(member)
            merged["type"] += described.pop("type")
            assert not set(described) & set(merged), described  # nothing said twice
            merged |= described
        return merged if len(members) > 1 else python_side(members[0])
    if origin is Literal:
        return {"enum": list(typing.get_args(annotation))}
    if origin is dict:
        key, value = typing.get_args(annotation)
        names = python_side(key)
        assert names.pop("type") == ["string"]
        return {
            "type": ["object"],
            "propertyNames": names,
            "additionalProperties": python_side(value),
        }
    if origin is tuple:
        item, ellipsis = typing.get_args(annotation)
        assert ellipsis is Ellipsis
        return {"type": ["array"], "items": python_side(item)}
    if annotation is bytes:  # msgspec reads and writes bytes as padded standard base64
        return {"type": ["string"], "pattern": BASE64}
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return struct_side(annotation)
    return {"type": [_SCALARS[annotation]]}


def struct_side(record_type: type[msgspec.Struct]) -> dict[str, Any]:
    hints = typing.get_type_hints(record_type, include_extras=True)
    info = msgspec.structs.fields(record_type)
    out: dict[str, Any] = {
        "type": ["object"],
        "properties": {f.name: python_side(hints[f.name]) for f in info},
        "required": sorted(f.name for f in info if f.required),
    }
    schema_id = getattr(record_type, "SCHEMA", None)
    if schema_id is not None:  # the tag: "schema", required, exactly this id
        out["properties"]["schema"] = {"const": schema_id}
        out["required"] = sorted([*out["required"], "schema"])
    if record_type.__struct_config__.forbid_unknown_fields:
        out["additionalProperties"] = False
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_bound_and_pattern_equals_the_schema_files(kind: str) -> None:
    schema = schemas.load_schema(kind)
    expected = schema_side(schema, schema.get("$defs", {}))
    actual = struct_side(schemas.RECORD_TYPES[kind])
    assert sorted(actual["properties"]) == sorted(expected["properties"])
    for name, prop in expected["properties"].items():
        assert actual["properties"][name] == prop, f"{kind}.{name}"
    assert actual == expected


def test_the_command_must_not_be_blank_in_both() -> None:
    command = schemas.load_schema("request")["properties"]["command"]
    assert [{"pattern": part["pattern"]} for part in command["allOf"]] == [
        {"pattern": fields.NOT_BLANK.source}
    ]


def test_conditional_rules_agree_with_the_records() -> None:
    result = schemas.load_schema("result")
    encodings = [r for r in result["allOf"] if "else" in r]
    for rule in encodings:
        assert rule["if"]["properties"][next(iter(rule["if"]["properties"]))] == {"const": "base64"}
        assert rule["then"]["properties"] == {
            name: {"$ref": "#/$defs/base64"} for name in rule["else"]["properties"]
        }
    assert result["$defs"]["text"]["pattern"] == fields.NO_NUL.source
    status = schemas.load_schema("status")
    required = {
        rule["if"]["properties"]["state"]["const"]: tuple(rule["then"]["required"])
        for rule in status["allOf"]
    }
    assert required == records._REQUIRED_BY_STATE
    assert set(required) == set(schemas.STATUS_STATES)


@pytest.mark.parametrize("kind", KINDS)
def test_record_defaults_agree_with_schema_defaults(kind: str) -> None:
    schema = schemas.load_schema(kind)
    record_type = schemas.RECORD_TYPES[kind]
    for info in msgspec.structs.fields(record_type):
        prop = schema["properties"][info.name]
        if info.default_factory is not msgspec.NODEFAULT:
            default: Any = info.default_factory()
        else:
            default = info.default
        if default is msgspec.NODEFAULT or default is msgspec.UNSET:
            assert "default" not in prop, f"{kind}.{info.name}"  # required, or absent-only
        else:
            assert prop["default"] == default, f"{kind}.{info.name}"
            assert type(prop["default"]) in (type(default), int), f"{kind}.{info.name}"


def test_enumerations_agree_with_records() -> None:
    result, status, dead_letter = (
        schemas.load_schema(k) for k in ("result", "status", "dead_letter")
    )
    assert tuple(result["properties"]["status"]["enum"]) == schemas.RESULT_STATUSES
    assert tuple(status["properties"]["state"]["enum"]) == schemas.STATUS_STATES
    assert tuple(status["properties"]["counts"]["required"]) == schemas.RESULT_STATUSES
    assert tuple(status["properties"]["counts"]["properties"]) == schemas.RESULT_STATUSES
    assert tuple(dead_letter["properties"]["stage"]["enum"]) == schemas.DEAD_LETTER_STAGES
    assert tuple(result["$defs"]["encoding"]["enum"]) == schemas.OUTPUT_ENCODINGS


def test_the_translation_would_catch_drift() -> None:
    # The comparison above is only as good as python_side: it must see each kind of bound.
    assert python_side(fields.Host) == {
        "type": ["string"],
        "minLength": 1,
        "maxLength": limits.MAX_HOST_CHARS,
        "pattern": fields.HOST.source,
    }
    assert python_side(fields.ErrorBudget) == {
        "type": ["integer", "string", "null"],
        "minimum": 0,
        "maximum": limits.MAX_TARGETS,
        "pattern": fields.PERCENT.source,
    }
    assert python_side(fields.Env)["propertyNames"] == {
        "maxLength": limits.MAX_ENV_NAME_CHARS,
        "pattern": limits.ENV_NAME_PATTERN,
        "not": {"pattern": DENIED_ENV_PATTERN},
    }
    drifted = Annotated[str, msgspec.Meta(min_length=1, max_length=254), fields.HOST]
    assert python_side(drifted) != python_side(fields.Host)


def test_max_result_message_bytes_bounds_a_worst_case_result() -> None:
    control = "\x01"  # written as \u0001: six bytes for one character
    worst = records.Result(
        request_id="0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10",
        host="h" * limits.MAX_HOST_CHARS,
        port=65535,
        user=control * limits.MAX_USER_CHARS,
        attempt=limits.MAX_ATTEMPT,
        status="error",
        exit_status=None,
        exit_signal=None,
        stdout=control * 4096,
        stderr=control * 4096,
        stdout_encoding="utf-8",
        stderr_encoding="utf-8",
        stdout_bytes=4096,
        stderr_bytes=4096,
        stdout_truncated=False,
        stderr_truncated=False,
        stdout_sha256=schemas.EMPTY_SHA256,
        stderr_sha256=schemas.EMPTY_SHA256,
        started_at="2024-05-01T12:00:00.123456789+02:00",
        finished_at="2024-05-01T12:00:00.123456789+02:00",
        duration_ms=limits.MAX_SAFE_INTEGER,
        error=records.ErrorInfo(
            type=control * limits.MAX_ERROR_TYPE_CHARS,
            message=control * limits.MAX_ERROR_MESSAGE_CHARS,
        ),
        collector="c" * limits.MAX_INSTANCE_CHARS,
        labels={
            f"k{i:02d}" + "k" * 60: control * limits.MAX_LABEL_VALUE_CHARS
            for i in range(limits.MAX_LABELS)
        },
    )
    assert len(schemas.encode(worst)) <= limits.max_result_message_bytes(4096)


def test_readme_documents_every_field_and_rule() -> None:
    readme = (Path(schemas.__file__).parent / "README.md").read_text()
    for kind in KINDS:
        section = readme.split(f"### `{schemas.SCHEMA_IDS[kind]}`", 1)[1].split("###", 1)[0]
        for name in schemas.load_schema(kind)["properties"]:
            assert f"| `{name}` |" in section, f"README: {kind}.{name} is not documented"
    rules = readme.split("### Rules beyond the schema files", 1)[1].split("##", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_-]+)` \|", rules, re.M))
    assert documented == set(schemas.CROSS_FIELD_RULES), "README: the extra rules differ"
