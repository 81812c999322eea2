"""Records ⇄ JSON documents (dicts of JSON values), both ways, for the codec.

Reading assumes the document has passed its JSON Schema validator; writing produces documents
that validators then check. Timestamps are RFC 3339 UTC with 'Z' on the wire and aware UTC
datetimes in records (microseconds); output bytes use schemas.output's rule.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import orjson

from schemas import limits
from schemas.errors import SchemaError
from schemas.output import decode_output, encode_output
from schemas.records import (
    DEAD_LETTER_SCHEMA,
    REQUEST_SCHEMA,
    RESULT_SCHEMA,
    STATUS_SCHEMA,
    DeadLetter,
    ErrorInfo,
    Request,
    Result,
    Status,
    StatusCounts,
)
from schemas.rules import check_stream

T = TypeVar("T")


_fromisoformat = datetime.fromisoformat


def parse_timestamp(text: str, path: str) -> datetime:
    # The schema's pattern has already pinned the RFC 3339 shape; fromisoformat (fast, C) checks
    # the calendar (no 30 February) and keeps microseconds of up to 9 fraction digits.
    try:
        dt = _fromisoformat(text)
        return dt if dt.tzinfo is UTC else dt.astimezone(UTC)
    except ValueError:
        raise SchemaError(path, f'"{text}" is not a real date and time', "date-time") from None
    except OverflowError:
        raise SchemaError(
            path, f'"{text}" is out of range once converted to UTC', "date-time"
        ) from None


def _ts_or_none(text: str | None, path: str) -> datetime | None:
    return None if text is None else parse_timestamp(text, path)


def _int(value: Any) -> int:
    # JSON Schema counts 5.0 as an integer; records hold real ints.
    return value if type(value) is int else int(value)


def _bytes_or_none(text: str | None, path: str) -> bytes | None:
    return None if text is None else _output(text, "base64", path)


def _output(text: str, encoding: Any, path: str) -> bytes:
    try:
        return decode_output(text, encoding)
    except ValueError as exc:
        raise SchemaError(path, str(exc), "output") from None


def _maker(cls: type[T]) -> Callable[..., T]:
    """Build a frozen slotted dataclass from values in field order, without its __init__."""
    # A frozen dataclass's __init__ goes through object.__setattr__ per field: 3.4 µs for a
    # result, a third of the whole decode budget. Setting the slots directly is equivalent (no
    # __post_init__ exists) and takes 1.3 µs. The function is generated like dataclasses'
    # own __init__, so each slot setter is a local and the arity is checked by Python.
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    setters = {f"_set_{name}": getattr(cls, name).__set__ for name in names}
    lines = [
        f"def factory(_new, _cls, {', '.join(setters)}):",
        f"    def make({', '.join(names)}):",
        "        obj = _new(_cls)",
        *(f"        _set_{name}(obj, {name})" for name in names),
        "        return obj",
        "    return make",
    ]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102
    make: Callable[..., T] = namespace["factory"](object.__new__, cls, **setters)
    return make


_new_result = _maker(Result)
_MAX_OUTPUT: Final = limits.MAX_OUTPUT_BYTES


def request_from_doc(d: dict[str, Any]) -> Request:
    max_errors = d.get("max_errors")
    return Request(
        request_id=d["request_id"],
        submitted_at=parse_timestamp(d["submitted_at"], "submitted_at"),
        principal=d["principal"],
        command=d["command"],
        targets=tuple(d["targets"]),
        expires_at=_ts_or_none(d.get("expires_at"), "expires_at"),
        env=d.get("env", {}),
        timeout_s=float(d.get("timeout_s", limits.DEFAULT_TIMEOUT_S)),
        connect_timeout_s=float(d.get("connect_timeout_s", limits.DEFAULT_CONNECT_TIMEOUT_S)),
        concurrency=_int(d.get("concurrency", limits.DEFAULT_CONCURRENCY)),
        max_errors=_int(max_errors) if isinstance(max_errors, int | float) else max_errors,
        max_output_bytes=_int(d.get("max_output_bytes", limits.DEFAULT_MAX_OUTPUT_BYTES)),
        retries=_int(d.get("retries", limits.DEFAULT_RETRIES)),
        labels=d.get("labels", {}),
    )


def result_from_doc(d: dict[str, Any]) -> Result:
    # The sink's hot path: positional values in Result's field order (see _maker), integers
    # and "utf-8" text handled inline. Validation has already run, so text has no NUL, and
    # orjson never yields unpaired surrogates, so str.encode cannot fail here.
    v = d["port"]
    port = v if type(v) is int else int(v)
    v = d["attempt"]
    attempt = v if type(v) is int else int(v)
    v = d["exit_status"]
    exit_status = v if v is None or type(v) is int else int(v)
    v = d["stdout_bytes"]
    stdout_bytes = v if type(v) is int else int(v)
    v = d["stderr_bytes"]
    stderr_bytes = v if type(v) is int else int(v)
    v = d["duration_ms"]
    duration_ms = v if type(v) is int else int(v)
    v = d["stdout"]
    stdout = v.encode() if d["stdout_encoding"] == "utf-8" else _output(v, "base64", "stdout")
    v = d["stderr"]
    stderr = v.encode() if d["stderr_encoding"] == "utf-8" else _output(v, "base64", "stderr")
    v = d["error"]
    error = None if v is None else ErrorInfo(type=v["type"], message=v["message"])
    try:
        started_at = _fromisoformat(d["started_at"])
        finished_at = _fromisoformat(d["finished_at"])
    except ValueError:
        started_at = parse_timestamp(d["started_at"], "started_at")  # raises the precise error
        finished_at = parse_timestamp(d["finished_at"], "finished_at")
    if started_at.tzinfo is not UTC or finished_at.tzinfo is not UTC:
        started_at = parse_timestamp(d["started_at"], "started_at")
        finished_at = parse_timestamp(d["finished_at"], "finished_at")
    # check_result's rules, inline; len(captured) is the length of the decoded bytes.
    if len(stdout) != stdout_bytes or d["stdout_truncated"] or stdout_bytes > _MAX_OUTPUT:
        check_stream("stdout", len(stdout), stdout_bytes, d["stdout_truncated"])
    if len(stderr) != stderr_bytes or d["stderr_truncated"] or stderr_bytes > _MAX_OUTPUT:
        check_stream("stderr", len(stderr), stderr_bytes, d["stderr_truncated"])
    return _new_result(
        d["request_id"],
        d["host"],
        port,
        d["user"],
        attempt,
        d["status"],
        exit_status,
        d["exit_signal"],
        stdout,
        stderr,
        stdout_bytes,
        stderr_bytes,
        d["stdout_truncated"],
        d["stderr_truncated"],
        d["stdout_sha256"],
        d["stderr_sha256"],
        started_at,
        finished_at,
        duration_ms,
        error,
        d["collector"],
        d["labels"],
    )


def status_from_doc(d: dict[str, Any]) -> Status:
    counts = d.get("counts")
    targets = d.get("targets")
    targets_total = d.get("targets_total")
    duration_ms = d.get("duration_ms")
    return Status(
        request_id=d["request_id"],
        state=d["state"],
        at=parse_timestamp(d["at"], "at"),
        collector=d["collector"],
        submitted_at=_ts_or_none(d.get("submitted_at"), "submitted_at"),
        principal=d.get("principal"),
        command=d.get("command"),
        targets=None if targets is None else tuple(targets),
        labels=d.get("labels"),
        targets_total=None if targets_total is None else _int(targets_total),
        reason=d.get("reason"),
        counts=None if counts is None else StatusCounts(**{k: _int(v) for k, v in counts.items()}),
        duration_ms=None if duration_ms is None else _int(duration_ms),
    )


def dead_letter_from_doc(d: dict[str, Any]) -> DeadLetter:
    return DeadLetter(
        source_topic=d["source_topic"],
        partition=_int(d["partition"]),
        offset=_int(d["offset"]),
        key=_bytes_or_none(d["key"], "key"),
        value=_bytes_or_none(d["value"], "value"),
        error=ErrorInfo(type=d["error"]["type"], message=d["error"]["message"]),
        stage=d["stage"],
        at=parse_timestamp(d["at"], "at"),
        instance=d["instance"],
        request_id=d.get("request_id"),
        source_timestamp=_ts_or_none(d.get("source_timestamp"), "source_timestamp"),
    )


def _ts_out(dt: Any, path: str) -> str:
    if not isinstance(dt, datetime):
        raise SchemaError(path, f"must be a datetime, not {type(dt).__name__}", "type")
    if dt.tzinfo is not UTC:
        if dt.utcoffset() is None:
            raise SchemaError(
                path,
                "is a naive datetime; give it a time zone (e.g. datetime.now(UTC))",
                "timezone",
            )
        dt = dt.astimezone(UTC)
    return orjson.dumps(dt, option=orjson.OPT_UTC_Z)[1:-1].decode()


def _ts_out_or_none(dt: datetime | None, path: str) -> str | None:
    return None if dt is None else _ts_out(dt, path)


def _bytes_out(data: Any, path: str) -> tuple[str, str]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SchemaError(path, f"must be bytes, not {type(data).__name__}", "type")
    return encode_output(bytes(data))


def _base64_out(data: Any, path: str) -> str | None:
    if data is None:
        return None
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SchemaError(path, f"must be bytes or None, not {type(data).__name__}", "type")
    return base64.b64encode(data).decode("ascii")


def _error_out(e: ErrorInfo | None) -> dict[str, Any] | None:
    return None if e is None else {"type": e.type, "message": e.message}


def request_doc(r: Request) -> dict[str, Any]:
    return {
        "schema": REQUEST_SCHEMA,
        "request_id": r.request_id,
        "submitted_at": _ts_out(r.submitted_at, "submitted_at"),
        "expires_at": _ts_out_or_none(r.expires_at, "expires_at"),
        "principal": r.principal,
        "command": r.command,
        "targets": list(r.targets),
        "env": dict(r.env),
        "timeout_s": r.timeout_s,
        "connect_timeout_s": r.connect_timeout_s,
        "concurrency": r.concurrency,
        "max_errors": r.max_errors,
        "max_output_bytes": r.max_output_bytes,
        "retries": r.retries,
        "labels": dict(r.labels),
    }


def result_doc(r: Result) -> dict[str, Any]:
    stdout, stdout_encoding = _bytes_out(r.stdout, "stdout")
    stderr, stderr_encoding = _bytes_out(r.stderr, "stderr")
    return {
        "schema": RESULT_SCHEMA,
        "request_id": r.request_id,
        "host": r.host,
        "port": r.port,
        "user": r.user,
        "attempt": r.attempt,
        "status": r.status,
        "exit_status": r.exit_status,
        "exit_signal": r.exit_signal,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_encoding": stdout_encoding,
        "stderr_encoding": stderr_encoding,
        "stdout_bytes": r.stdout_bytes,
        "stderr_bytes": r.stderr_bytes,
        "stdout_truncated": r.stdout_truncated,
        "stderr_truncated": r.stderr_truncated,
        "stdout_sha256": r.stdout_sha256,
        "stderr_sha256": r.stderr_sha256,
        "started_at": _ts_out(r.started_at, "started_at"),
        "finished_at": _ts_out(r.finished_at, "finished_at"),
        "duration_ms": r.duration_ms,
        "error": _error_out(r.error),
        "collector": r.collector,
        "labels": dict(r.labels),
    }


def status_doc(s: Status) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": STATUS_SCHEMA,
        "request_id": s.request_id,
        "state": s.state,
        "at": _ts_out(s.at, "at"),
        "collector": s.collector,
    }
    # Optional fields are left out rather than written as null: the schema types them without null.
    optional = {
        "submitted_at": _ts_out_or_none(s.submitted_at, "submitted_at"),
        "principal": s.principal,
        "command": s.command,
        "targets": None if s.targets is None else list(s.targets),
        "labels": None if s.labels is None else dict(s.labels),
        "targets_total": s.targets_total,
        "reason": s.reason,
        "counts": None if s.counts is None else s.counts.as_dict(),
        "duration_ms": s.duration_ms,
    }
    doc.update((k, v) for k, v in optional.items() if v is not None)
    return doc


def dead_letter_doc(d: DeadLetter) -> dict[str, Any]:
    return {
        "schema": DEAD_LETTER_SCHEMA,
        "source_topic": d.source_topic,
        "partition": d.partition,
        "offset": d.offset,
        "source_timestamp": _ts_out_or_none(d.source_timestamp, "source_timestamp"),
        "key": _base64_out(d.key, "key"),
        "value": _base64_out(d.value, "value"),
        "request_id": d.request_id,
        "error": _error_out(d.error),
        "stage": d.stage,
        "at": _ts_out(d.at, "at"),
        "instance": d.instance,
    }
