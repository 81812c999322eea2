"""A validated fast path for consumers that store results in their wire form (the sink).

decode_result_row(raw) accepts exactly what decode_result accepts and raises the same SchemaError
(path, message and rule) for everything else: it runs a validator compiled from the same schema
by the same compiler (which also hands back the values it read), then every cross-field rule in
the same order. It skips building what a store does not need: no Result, no ErrorInfo and, for
"utf-8" output (the common case), no bytes — the stored form of such output is the wire text
itself, and its size in bytes is its length when it is ASCII. It returns the result flat, in
RESULT_ROW_FIELDS order, as decode_result followed by encode_output would give it: outputs as
(text, encoding) by the contract's rule, the error as its type and message, labels as JSON
text, timestamps as aware UTC datetimes, integers as ints.
tests/unit/test_codec_fastpath.py checks the equivalence on generated and mutated documents.

The common result (both outputs "utf-8" and whole, timestamps in ...Z) is vouched for in C by
schemas._fastrow when it was built (pip builds it where a C compiler exists; NATIVE says whether
it is in use); everything else, including every error, goes through the Python code below.
FLEETRUN_NATIVE=0 turns the C path off, to compare or to rule it out.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Final

import orjson

from schemas import codec, limits
from schemas.documents import _output, parse_timestamp
from schemas.output import encode_output
from schemas.records import RESULT_SCHEMA
from schemas.rules import check_stream
from schemas.validator import compile_reader

RESULT_ROW_FIELDS: Final = (
    "request_id",
    "host",
    "attempt",
    "finished_at",
    "port",
    "user",
    "status",
    "exit_status",
    "exit_signal",
    "stdout",
    "stdout_encoding",
    "stderr",
    "stderr_encoding",
    "stdout_bytes",
    "stderr_bytes",
    "stdout_truncated",
    "stderr_truncated",
    "stdout_sha256",
    "stderr_sha256",
    "started_at",
    "duration_ms",
    "error_type",
    "error_message",
    "collector",
    "labels",
)

# The validator decode_result runs, compiled from the same schema by the same compiler, that
# also hands back the values it read (in this order) instead of leaving them to be read again.
_READ: Final = (
    "request_id", "host", "port", "user", "attempt", "status", "exit_status", "exit_signal",
    "stdout", "stderr", "stdout_encoding", "stderr_encoding", "stdout_bytes", "stderr_bytes",
    "stdout_truncated", "stderr_truncated", "stdout_sha256", "stderr_sha256", "started_at",
    "finished_at", "duration_ms", "error", "collector", "labels",
)  # fmt: skip
_validate_and_read: Final = compile_reader(codec.load_schema("result"), _READ)
_load: Final = codec._load
_fromisoformat: Final = datetime.fromisoformat
_MAX_OUTPUT: Final = limits.MAX_OUTPUT_BYTES
_EMPTY_OUTPUT: Final = ("", "utf-8")
_EMPTY_LABELS: Final = "{}"


def _native_module() -> ModuleType | None:
    if os.environ.get("FLEETRUN_NATIVE", "1") == "0":
        return None
    try:
        from schemas import _fastrow  # type: ignore[attr-defined]  # built by setup.py
    except ImportError:
        return None
    statuses = frozenset(codec.load_schema("result")["properties"]["status"]["enum"])
    _fastrow.configure(orjson.loads, orjson.dumps, _MAX_OUTPUT, statuses)
    return _fastrow  # type: ignore[no-any-return]


_native: Final = _native_module()
NATIVE: Final = _native is not None


def decode_result_row(raw: codec.RawMessage, *extra: Any) -> tuple[Any, ...]:
    """Validate a fleetrun.result/1 message exactly as decode_result does; its fields, flat,
    then `extra` (the sink appends where it read the record)."""
    if _native is not None:
        row: tuple[Any, ...] | None = _native.row(raw, *extra)
        if row is not None:
            return row
    return decode_result_row_python(raw) + extra


def native_row(raw: codec.RawMessage, *extra: Any) -> tuple[Any, ...] | None:
    """The C half alone: the row (plus `extra`) when it vouches for `raw`, else None."""
    return None if _native is None else _native.row(raw, *extra)


def decode_result_row_python(raw: codec.RawMessage) -> tuple[Any, ...]:
    """decode_result_row without the C path: for every message it cannot vouch for, and tests."""
    try:
        d = orjson.loads(raw)  # type: ignore[arg-type]  # None raises TypeError: below
    except (orjson.JSONDecodeError, TypeError):
        d = None
    if type(d) is not dict or d.get("schema") != RESULT_SCHEMA:
        d = _load(raw, RESULT_SCHEMA)  # raises the precise error
    (
        request_id, host, port, user, attempt, status, exit_status, exit_signal, stdout, stderr,
        stdout_encoding, stderr_encoding, stdout_bytes, stderr_bytes, stdout_truncated,
        stderr_truncated, stdout_sha256, stderr_sha256, started_at_text, finished_at_text,
        duration_ms, error, collector, labels,
    ) = _validate_and_read(d)  # fmt: skip
    # From here on, result_from_doc's steps in its order, so the first failure is the same one.
    # JSON Schema counts 5.0 as an integer; stored values are real ints.
    if type(port) is not int:
        port = int(port)
    if type(attempt) is not int:
        attempt = int(attempt)
    if exit_status is not None and type(exit_status) is not int:
        exit_status = int(exit_status)
    if type(stdout_bytes) is not int:
        stdout_bytes = int(stdout_bytes)
    if type(stderr_bytes) is not int:
        stderr_bytes = int(stderr_bytes)
    if type(duration_ms) is not int:
        duration_ms = int(duration_ms)
    # "utf-8" text passed validation, so it has no NUL and (orjson refuses unpaired surrogates)
    # encodes: encode_output would give it back unchanged. base64 is decoded, as decode_result
    # does, and re-encoded by the rule: it may hold UTF-8 text, or non-canonical padding bits.
    if stdout_encoding == "utf-8":
        stdout_len = len(stdout) if stdout.isascii() else len(stdout.encode())
    else:
        data = _output(stdout, "base64", "stdout")
        stdout_len = len(data)
        stdout, stdout_encoding = encode_output(data) if data else _EMPTY_OUTPUT
    if stderr_encoding == "utf-8":
        stderr_len = len(stderr) if stderr.isascii() else len(stderr.encode())
    else:
        data = _output(stderr, "base64", "stderr")
        stderr_len = len(data)
        stderr, stderr_encoding = encode_output(data) if data else _EMPTY_OUTPUT
    error_type, error_message = (None, None) if error is None else (error["type"], error["message"])
    try:
        started_at = _fromisoformat(started_at_text)
        finished_at = _fromisoformat(finished_at_text)
    except ValueError:
        started_at = parse_timestamp(started_at_text, "started_at")  # raises the precise error
        finished_at = parse_timestamp(finished_at_text, "finished_at")
    if started_at.tzinfo is not UTC or finished_at.tzinfo is not UTC:
        started_at = parse_timestamp(started_at_text, "started_at")
        finished_at = parse_timestamp(finished_at_text, "finished_at")
    # check_result's rules (output_size, truncated), as result_from_doc applies them.
    if stdout_len != stdout_bytes or stdout_truncated or stdout_bytes > _MAX_OUTPUT:
        check_stream("stdout", stdout_len, stdout_bytes, stdout_truncated)
    if stderr_len != stderr_bytes or stderr_truncated or stderr_bytes > _MAX_OUTPUT:
        check_stream("stderr", stderr_len, stderr_bytes, stderr_truncated)
    return (
        request_id,
        host,
        attempt,
        finished_at,
        port,
        user,
        status,
        exit_status,
        exit_signal,
        stdout,
        stdout_encoding,
        stderr,
        stderr_encoding,
        stdout_bytes,
        stderr_bytes,
        stdout_truncated,
        stderr_truncated,
        stdout_sha256,
        stderr_sha256,
        started_at,
        duration_ms,
        error_type,
        error_message,
        collector,
        orjson.dumps(labels).decode() if labels else _EMPTY_LABELS,
    )


__all__ = [
    "NATIVE",
    "RESULT_ROW_FIELDS",
    "decode_result_row",
    "decode_result_row_python",
    "native_row",
]
