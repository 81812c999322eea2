"""Cross-field rules: what the codec checks beyond the JSON Schema files.

Each failure's SchemaError.rule is one of CROSS_FIELD_RULES; schemas/README.md lists them for
implementers in other languages.
"""

from __future__ import annotations

from typing import Any, Final

from schemas import limits
from schemas.errors import SchemaError
from schemas.records import Request, Result, Status
from schemas.targets import check_targets

# "date-time" (an impossible calendar date) and "output" (text or base64 that does not decode)
# are raised while reading; the others below.
CROSS_FIELD_RULES: Final = frozenset(
    {"date-time", "expires_at", "targets", "output", "output_size", "truncated", "counts"}
)


def check_request(r: Request) -> None:
    if r.expires_at is not None and r.expires_at <= r.submitted_at:
        raise SchemaError(
            "expires_at",
            "must be after submitted_at (the request would expire before it was sent)",
            "expires_at",
        )
    check_targets(r.targets)


def check_stream(name: str, captured: int, total: int, truncated: bool) -> None:
    if captured > limits.MAX_OUTPUT_BYTES:
        raise SchemaError(
            name,
            f"holds {captured:,} bytes; the limit per stream is {limits.MAX_OUTPUT_BYTES:,}",
            "output_size",
        )
    if captured > total:
        raise SchemaError(
            name,
            f"holds {captured:,} bytes but {name}_bytes says the stream had {total:,}",
            "output_size",
        )
    if truncated != (captured < total):
        held = f"holds {captured:,} of the stream's {total:,} bytes"
        raise SchemaError(
            f"{name}_truncated",
            f"must be {'true' if captured < total else 'false'}: {name} {held}",
            "truncated",
        )


def check_result(r: Result) -> None:
    check_stream("stdout", len(r.stdout), r.stdout_bytes, r.stdout_truncated)
    check_stream("stderr", len(r.stderr), r.stderr_bytes, r.stderr_truncated)


def check_status(s: Status) -> None:
    if s.counts is not None and s.targets_total is not None and s.counts.total != s.targets_total:
        raise SchemaError(
            "counts",
            f"add up to {s.counts.total:,} but targets_total is {s.targets_total:,}: "
            "every expanded target gets exactly one final result",
            "counts",
        )


def no_check(_msg: Any) -> None:
    return None
