"""msgspec's complaint about a message, retold as one SchemaError a person can act on.

msgspec stops at the first problem and says it in its own words ("Expected `int` >= 1 - at
`$.concurrency`"); people and other implementations get the contract's words instead: the field
path as code reads it (`targets[3]`, `env.FOO`), the problem with the value that broke it
("is 0; must be at least 1"), and the rule (`SchemaError.rule`: the JSON Schema keyword, or one
of the extra rules schemas/README.md lists). This only runs for a message already refused, so it
may read the message again and walk the record types to find the value and its bounds.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Final, Literal, Union

import msgspec
import orjson

from schemas.errors import SchemaError
from schemas.fields import BASE64_MESSAGE

_LOCATION: Final = re.compile(
    r"(?P<what>.*?)(?: - at `(?P<at>[^`]*)`(?: in `(?P<inside>[^`]*)`)?)?\Z", re.S
)
_PATH_PART: Final = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_MISSING: Final = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_UNKNOWN: Final = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")
_TYPE: Final = re.compile(r"Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`")
_BOUND: Final = re.compile(r"Expected `(?:int|float)` (?P<op>[<>]=?) ")
_LENGTH: Final = re.compile(r"Expected `(?P<kind>str|array|object)` of length (?P<op>[<>]=?) ")
_ENUM: Final = re.compile(r"Invalid enum value ")

_TYPE_WORDS: Final = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "object": "an object",
    "array": "an array",
    "bytes": "a string",
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


def explain(exc: msgspec.MsgspecError, doc: Any, record_type: type[Any]) -> SchemaError:
    """The SchemaError for `exc`, raised by msgspec decoding `doc` (parsed again) as
    `record_type`. The caller has already checked that `doc` is an object of the right kind."""
    cause = exc.__cause__
    m = _LOCATION.match(str(exc))
    assert m is not None  # the pattern matches every string
    what, at, inside = m["what"], m["at"] or "$", m["inside"]
    if isinstance(cause, SchemaError):  # raised by a record's own rules (__post_init__)
        prefix = _display(_parts(at))
        if not prefix:
            return cause
        path = f"{prefix}.{cause.path}" if cause.path else prefix
        return SchemaError(path, cause.problem, cause.rule)
    parts = _parts(inside if inside is not None else at)
    if inside is not None or "..." in parts:
        parts = _find_culprit(doc, record_type, parts, is_key=inside is not None)
    if inside is not None:  # the key itself broke its rule: its value is the key
        value = parts[-1]
        container = _strip(_annotation_at(record_type, parts[:-1]))
        annotation = typing.get_args(container)[0] if typing.get_args(container) else None
    else:
        value = _value_at(doc, parts)
        annotation = _annotation_at(record_type, parts)
    for pattern, build in _RULES:
        found = pattern.match(what)
        if found:
            return build(found, _display(parts), value, annotation)
    return SchemaError(_display(parts), what[:1].lower() + what[1:], "type")


# --- building the error for each kind of msgspec message -----------------------------------


def _missing(m: re.Match[str], path: str, _value: Any, _ann: Any) -> SchemaError:
    return SchemaError(_join(path, m["name"]), "is required", "required")


def _unknown(m: re.Match[str], path: str, _value: Any, _ann: Any) -> SchemaError:
    return SchemaError(
        _join(path, m["name"]), "is not an allowed field here", "additionalProperties"
    )


def _type(m: re.Match[str], path: str, value: Any, _ann: Any) -> SchemaError:
    if type(value) is float and value.is_integer() and "int" in m["expected"].split(" | "):
        return SchemaError(
            path,
            f"is {value!r}; integers are written without a fraction or exponent ({int(value)})",
            "integer",
        )
    expected = " or ".join(_TYPE_WORDS.get(t, t) for t in m["expected"].split(" | "))
    return SchemaError(path, f"must be {expected}, not {json_type(value)}", "type")


def _bound(m: re.Match[str], path: str, value: Any, ann: Any) -> SchemaError:
    meta = _meta(ann)
    if m["op"].startswith(">"):
        return SchemaError(
            path, f"is {_number(value)}; must be at least {_number(meta.get('ge'))}", "minimum"
        )
    return SchemaError(
        path, f"is {_number(value)}; must be at most {_number(meta.get('le'))}", "maximum"
    )


def _length(m: re.Match[str], path: str, value: Any, ann: Any) -> SchemaError:
    meta = _meta(ann)
    size = len(value) if isinstance(value, str | list | dict) else 0
    at_least = m["op"].startswith(">")
    limit = meta.get("min_length" if at_least else "max_length", 0)
    kind = m["kind"]
    if at_least:
        if limit == 1:
            return SchemaError(
                path, "must not be empty", "minLength" if kind == "str" else "minItems"
            )
        if kind == "str":
            return SchemaError(
                path, f"is {size:,} characters long; the minimum is {limit:,}", "minLength"
            )
        return SchemaError(path, f"has {size:,} items; needs at least {limit:,}", "minItems")
    if kind == "str":
        return SchemaError(
            path, f"is {size:,} characters long; the limit is {limit:,}", "maxLength"
        )
    if kind == "array":
        return SchemaError(path, f"has {size:,} items; the limit is {limit:,}", "maxItems")
    return SchemaError(path, f"has {size:,} entries; the limit is {limit:,}", "maxProperties")


def _enum(_m: re.Match[str], path: str, value: Any, ann: Any) -> SchemaError:
    allowed = ", ".join(str(v) for v in _literal_values(ann))
    return SchemaError(path, f"is {_literal(value)}; must be one of: {allowed}", "enum")


def _base64(_m: re.Match[str], path: str, value: Any, _ann: Any) -> SchemaError:
    return SchemaError(path, f"{BASE64_MESSAGE} or null", "pattern")


def _out_of_range(_m: re.Match[str], path: str, value: Any, _ann: Any) -> SchemaError:
    return SchemaError(path, f"is {_number(value)}, out of range for this field", "maximum")


_RULES: Final = (
    (_MISSING, _missing),
    (_UNKNOWN, _unknown),
    (_TYPE, _type),
    (_BOUND, _bound),
    (_LENGTH, _length),
    (_ENUM, _enum),
    (re.compile("Invalid base64 encoded string"), _base64),
    (re.compile("Number out of range"), _out_of_range),
)


# --- paths, values and the record types behind them ------------------------------------------

Part = str | int


def _parts(location: str) -> list[Part]:
    """`$.env[...]` → ["env", "..."]; `$.targets[3]` → ["targets", 3]."""
    parts: list[Part] = []
    for name, index in _PATH_PART.findall(location.removeprefix("$")):
        if name:
            parts.append(name)
        else:
            parts.append(int(index) if index.isdigit() else index)
    return parts


def _display(parts: list[Part]) -> str:
    """Parts as messages show them: `targets[3]`, `env.FOO`, `error.message`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _value_at(doc: Any, parts: list[Part]) -> Any:
    for part in parts:
        if isinstance(doc, dict) and isinstance(part, str):
            doc = doc.get(part)
        elif isinstance(doc, list) and isinstance(part, int) and part < len(doc):
            doc = doc[part]
        else:
            return None
    return doc


def _find_culprit(
    doc: Any, record_type: type[Any], parts: list[Part], *, is_key: bool
) -> list[Part]:
    """msgspec does not name the entry of an object it refused (`$.env[...]`, or a key `in
    $.env`): find it by checking each entry against the same type."""
    head = parts[: parts.index("...")] if "..." in parts else parts
    container = _value_at(doc, head)
    annotation = _strip(_annotation_at(record_type, head))
    if not isinstance(container, dict) or typing.get_origin(annotation) is not dict:
        return head
    key_type, value_type = typing.get_args(annotation)
    for key, value in container.items():
        try:
            msgspec.convert(key if is_key else value, key_type if is_key else value_type)
        except msgspec.ValidationError:
            return [*head, key]
    return head


def _annotation_at(record_type: type[Any], parts: list[Part]) -> Any:
    """The (Annotated) type the records declare at `parts`, or None."""
    annotation: Any = record_type
    for part in parts:
        annotation = _strip(annotation)
        if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
            hints = typing.get_type_hints(annotation, include_extras=True)
            annotation = hints.get(part) if isinstance(part, str) else None
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) is tuple:
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    return annotation


def _strip(annotation: Any) -> Any:
    """The container or record inside Annotated[...] and `X | None | UnsetType`."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) in (Union, types.UnionType):
            members = [
                a for a in typing.get_args(annotation)
                if a is not type(None) and a is not msgspec.UnsetType
            ]  # fmt: skip
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _meta(annotation: Any) -> dict[str, Any]:
    """The bounds of the msgspec Meta on `annotation` (ge, le, min_length, max_length), merged
    over the members of a union such as max_errors' `int | str | None`."""
    members = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (Union, types.UnionType)
        else (annotation,)
    )
    out: dict[str, Any] = {}
    for member in members:
        if typing.get_origin(member) is not typing.Annotated:
            continue
        for meta in typing.get_args(member)[1:]:
            if isinstance(meta, msgspec.Meta):
                for name in ("ge", "le", "min_length", "max_length"):
                    if getattr(meta, name) is not None:
                        out.setdefault(name, getattr(meta, name))
    return out


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    annotation = _strip(annotation)
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return "null" if value is None else orjson.dumps(value).decode()
