"""Contract-valid wire records for tests, built from plain Python values.

Records hold the wire form (timestamps as RFC 3339 text, output as text plus its encoding) and
every field of a Result must be given; these builders take datetimes and output bytes and fill
in the rest consistently (sizes, digests, encodings, exit status by status).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from schemas import (
    RESULT_STATUSES,
    ErrorInfo,
    Request,
    Result,
    ResultStatus,
    StatusCounts,
    encode_output,
    format_timestamp,
    limits,
)

RID: Final = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"
T0: Final = datetime(2024, 5, 1, 12, tzinfo=UTC)


class _ByStatus(enum.Enum):
    """exit_status not given: the one its status implies."""

    EXIT_STATUS = "by status"


def make_result(
    request_id: str = RID,
    host: str = "web01",
    *,
    status: ResultStatus = "ok",
    stdout: bytes = b"",
    stderr: bytes = b"",
    stdout_bytes: int | None = None,
    stderr_bytes: int | None = None,
    exit_status: int | _ByStatus | None = _ByStatus.EXIT_STATUS,
    exit_signal: str | None = None,
    error: ErrorInfo | None = None,
    attempt: int = 1,
    port: int = 22,
    user: str = "deploy",
    finished_at: datetime = T0,
    duration_ms: int = 0,
    collector: str = "c1",
    labels: Mapping[str, str] | None = None,
) -> Result:
    """A valid result. Output is the captured bytes; `stdout_bytes`/`stderr_bytes` (the whole
    stream's size) default to what was captured, and a larger one marks the stream truncated.
    exit_status defaults to 0 for "ok", 1 for "failed", none otherwise; an "error" result
    without `error` gets a generic one."""
    if exit_status is _ByStatus.EXIT_STATUS:
        exit_status = {"ok": 0, "failed": 1}.get(status)
    if status == "error" and error is None:
        error = ErrorInfo(type="Error", message="something went wrong")
    out_text, out_encoding = encode_output(stdout)
    err_text, err_encoding = encode_output(stderr)
    out_total = len(stdout) if stdout_bytes is None else stdout_bytes
    err_total = len(stderr) if stderr_bytes is None else stderr_bytes
    return Result(
        request_id=request_id,
        host=host,
        port=port,
        user=user,
        attempt=attempt,
        status=status,
        exit_status=exit_status,
        exit_signal=exit_signal,
        stdout=out_text,
        stderr=err_text,
        stdout_encoding=out_encoding,
        stderr_encoding=err_encoding,
        stdout_bytes=out_total,
        stderr_bytes=err_total,
        stdout_truncated=len(stdout) < out_total,
        stderr_truncated=len(stderr) < err_total,
        stdout_sha256=hashlib.sha256(stdout).hexdigest(),
        stderr_sha256=hashlib.sha256(stderr).hexdigest(),
        started_at=format_timestamp(finished_at - timedelta(milliseconds=duration_ms)),
        finished_at=format_timestamp(finished_at),
        duration_ms=duration_ms,
        error=error,
        collector=collector,
        labels=dict(labels or {}),
    )


def make_request(
    request_id: str = RID,
    *,
    targets: Sequence[str] = ("web[1-4]",),
    submitted_at: datetime = T0,
    expires_at: datetime | None = None,
    principal: str = "alice",
    command: str = "uname -r",
    labels: Mapping[str, str] | None = None,
    concurrency: int = limits.DEFAULT_CONCURRENCY,
    max_errors: int | str | None = None,
) -> Request:
    """A valid request with the given details (the rest at the contract's defaults)."""
    return Request(
        request_id=request_id,
        submitted_at=format_timestamp(submitted_at),
        expires_at=None if expires_at is None else format_timestamp(expires_at),
        principal=principal,
        command=command,
        targets=tuple(targets),
        labels=dict(labels or {}),
        concurrency=concurrency,
        max_errors=max_errors,
    )


def make_counts(**counts: int) -> StatusCounts:
    """StatusCounts with the given counts and 0 for every other status."""
    unknown = set(counts) - set(RESULT_STATUSES)
    if unknown:
        raise TypeError(f"not result statuses: {sorted(unknown)}")
    return StatusCounts(**{status: counts.get(status, 0) for status in RESULT_STATUSES})
