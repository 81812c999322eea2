"""The JSON Schema files: well-formed, documented, portable, and in step with the Python side."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import schemas
from schemas import limits, records
from schemas.validator import ANNOTATION_KEYWORDS, VALIDATION_KEYWORDS

KINDS = list(schemas.KINDS)


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
def test_only_keywords_the_compiler_implements(kind: str) -> None:
    # Also keeps the files in the subset whose meaning is the same in draft-07 (AsyncAPI's
    # schema format) and 2020-12: no prefixItems, unevaluated*, dependent*, $anchor, $dynamicRef.
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
            assert not re.search(r"\\[dDwWsSbB]", pattern), f"{kind}: {path}: {pattern}"
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
    dead_letter_error = schemas.load_schema("dead_letter")["$defs"]["error"]
    assert defs["optional_error"]["properties"] == dead_letter_error["properties"]
    assert defs["optional_error"]["required"] == dead_letter_error["required"]


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
]


@pytest.mark.parametrize(
    ("kind", "pointer", "value"), LIMITS, ids=[f"{k}:{p}" for k, p, _ in LIMITS]
)
def test_schema_files_agree_with_limits(kind: str, pointer: str, value: object) -> None:
    assert _get(kind, pointer) == value


def test_record_defaults_agree_with_schema_defaults() -> None:
    request = records.Request(
        request_id="x", submitted_at=datetime.now(UTC), principal="p", command="c", targets=("t",)
    )
    for name, prop in schemas.load_schema("request")["properties"].items():
        if "default" in prop:
            assert getattr(request, name) == prop["default"], name


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


def test_result_fields_are_the_records_fields_plus_wire_encodings() -> None:
    wire = set(schemas.load_schema("result")["properties"]) - {
        "schema",
        "stdout_encoding",
        "stderr_encoding",
    }
    assert wire == {f.name for f in fields(records.Result)}
    assert set(schemas.load_schema("result")["required"]) == wire | {
        "schema",
        "stdout_encoding",
        "stderr_encoding",
    }


@pytest.mark.parametrize(
    ("kind", "record"),
    [("request", records.Request), ("status", records.Status), ("dead_letter", records.DeadLetter)],
)
def test_other_fields_match_records(kind: str, record: type) -> None:
    assert set(schemas.load_schema(kind)["properties"]) - {"schema"} == {
        f.name for f in fields(record)
    }


def test_max_result_message_bytes_bounds_a_worst_case_result() -> None:
    worst = records.Result(
        request_id="0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10",
        host="h" * limits.MAX_HOST_CHARS,
        port=65535,
        user="\x01" * limits.MAX_USER_CHARS,
        status="error",
        stdout=b"\x01" * 4096,
        stdout_bytes=4096,
        stderr=b"\x01" * 4096,
        stderr_bytes=4096,
        started_at=datetime.now(UTC),
        finished_at=datetime.now(UTC),
        duration_ms=limits.MAX_SAFE_INTEGER,
        error=records.ErrorInfo(
            type="\x01" * limits.MAX_ERROR_TYPE_CHARS,
            message="\x01" * limits.MAX_ERROR_MESSAGE_CHARS,
        ),
        collector="c" * limits.MAX_INSTANCE_CHARS,
        labels={
            f"k{i:02d}" + "k" * 59: "\x01" * limits.MAX_LABEL_VALUE_CHARS
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
    for rule in schemas.CROSS_FIELD_RULES:
        assert f"| `{rule}` |" in readme, f"README: rule {rule} is not documented"
