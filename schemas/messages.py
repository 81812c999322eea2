"""Messages a person can act on, for validation failures: the words, not the checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# errorMessage (the ajv-errors convention) replaces the generic text for these rules only:
# lengths, bounds and enums are clearer with the actual numbers.
_CUSTOM_MESSAGE_RULES = frozenset({"pattern", "const", "not", "required", "additionalProperties"})
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
    "object": "an object",
    "array": "an array",
}


def json_type(v: Any) -> str:
    """The JSON type name of a decoded value, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list | tuple):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema defines it (true is not 1; 1.0 is 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def format_path(parts: Sequence[str | int]) -> str:
    """Join path parts the way messages show them: `targets[3]`, `env.FOO`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else repr(value)


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def problem(node: Mapping[str, Any], rule: str, value: Any) -> str:
    custom = node.get("errorMessage")
    if custom and rule in _CUSTOM_MESSAGE_RULES:
        return str(custom)
    if rule == "type":
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        return f"must be {' or '.join(_TYPE_WORDS[t] for t in types)}, not {json_type(value)}"
    if rule == "required":
        return "is required"
    if rule == "additionalProperties":
        return "is not an allowed field here"
    if rule == "enum":
        return f"is {_literal(value)}; must be one of: {', '.join(map(str, node['enum']))}"
    if rule == "const":
        return f"must be {_literal(node['const'])}"
    if rule == "minLength":
        if node["minLength"] == 1:
            return "must not be empty"
        return f"is {len(value):,} characters long; the minimum is {node['minLength']:,}"
    if rule == "maxLength":
        return f"is {len(value):,} characters long; the limit is {node['maxLength']:,}"
    if rule == "minimum":
        return f"is {_number(value)}; must be at least {_number(node['minimum'])}"
    if rule == "maximum":
        return f"is {_number(value)}; must be at most {_number(node['maximum'])}"
    if rule == "minItems":
        if node["minItems"] == 1:
            return "must not be empty"
        return f"has {len(value):,} items; needs at least {node['minItems']:,}"
    if rule == "maxItems":
        return f"has {len(value):,} items; the limit is {node['maxItems']:,}"
    if rule == "maxProperties":
        return f"has {len(value):,} entries; the limit is {node['maxProperties']:,}"
    if rule == "pattern":
        return f"does not match the pattern {node['pattern']}"
    return "is not allowed here"  # `not` without an errorMessage
