"""schemas/asyncapi.yaml: a valid AsyncAPI 3.0.0 document that matches the schema files.

Checked against AsyncAPI's published JSON Schema for 3.0.0, vendored in tests/unit/data (see its
README for where it came from). The official parser (npm @asyncapi/parser) also accepts the
document; it is not run here so that the unit tier needs no Node.js packages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

import schemas

SCHEMAS_DIR = Path(schemas.__file__).parent
ASYNCAPI_SCHEMA = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"


def _document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((SCHEMAS_DIR / "asyncapi.yaml").read_text())
    return document


def test_document_is_valid_asyncapi_3() -> None:
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    document = _document()
    assert document["asyncapi"] == "3.0.0"
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_validation_would_catch_a_broken_document() -> None:
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    document = _document()
    document["channels"]["requests"]["address"] = 42
    assert not validator.is_valid(document)


def test_topics_keys_and_payloads_match_the_schema_files() -> None:
    document = _document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        "fleetrun.requests",
        "fleetrun.results",
        "fleetrun.status",
        "fleetrun.dlq",
        "fleetrun.cancels",
        "fleetrun.output",
        "fleetrun.shards",
    }
    payloads = {}
    for message in document["components"]["messages"].values():
        payload = message["payload"]
        assert payload["schemaFormat"] == "application/schema+json;version=draft-07"
        path = SCHEMAS_DIR / payload["schema"]["$ref"]
        assert path.is_file(), path
        assert message["name"] == json.loads(path.read_text())["title"]
        assert message["contentType"] == "application/json"
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        payloads[message["name"]] = path.name
    assert payloads == {
        schema_id: f"{kind}.schema.json" for kind, schema_id in schemas.SCHEMA_IDS.items()
    }


def test_every_operation_points_at_a_channel_and_its_message() -> None:
    document = _document()
    for name, operation in document["operations"].items():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in document["channels"], name
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"#/channels/{channel}/messages/"), name
