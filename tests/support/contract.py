"""The contract's test references, shared by the schemas tests: the oracle (jsonschema, reading
patterns as ECMA-262 does), the decoder of each kind, the examples, and the UTC instant a
timestamp names, written from first principles."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import jsonschema
from jsonschema import ValidationError

import schemas
from schemas.patterns import python_pattern

EXAMPLES = Path(schemas.__file__).parent / "examples"
DECODERS: dict[str, Callable[[bytes], schemas.Message]] = {
    "request": schemas.decode_request,
    "result": schemas.decode_result,
    "status": schemas.decode_status,
    "dead_letter": schemas.decode_dead_letter,
    "cancel": schemas.decode_cancel,
    "output": schemas.decode_output_chunk,
    "shard": schemas.decode_shard,
}


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    # jsonschema hands `pattern` to Python's re, whose `$` also matches before a final "\n";
    # ECMA-262's does not, so "web01\n" would pass a host pattern here and fail in every
    # JavaScript validator. python_pattern is the records' own translation; the tests in
    # test_schemas_patterns check it independently.
    if validator.is_type(instance, "string") and not re.search(python_pattern(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
)


@functools.cache
def oracle(kind: str) -> Any:
    """The reference verdict for `kind`'s schema file: `.is_valid(doc)`, `.iter_errors(doc)`."""
    return EcmaValidator(schemas.load_schema(kind))


_PARTS: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:Z|([+-])(\d\d):(\d\d))\Z", re.ASCII
)


def instant(text: str) -> datetime | None:
    """The UTC instant a pattern-valid timestamp names, or None when it names none (30
    February, year 0, out of datetime's range once in UTC)."""
    m = _PARTS.match(text)
    assert m is not None, text
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, sign, offset_h, offset_m = m.groups()[6:]
    offset = timedelta(hours=int(offset_h or 0), minutes=int(offset_m or 0))
    microsecond = int((fraction or "0")[:6].ljust(6, "0"))  # fleetrun keeps microseconds
    try:
        local = datetime(
            year,
            month,
            day,
            hour,
            minute,
            second,
            microsecond,
            tzinfo=timezone(-offset if sign == "-" else offset),
        )
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
