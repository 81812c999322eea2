"""Wire records → database rows: the sink owns its tables' column order, nothing else does.

Pure: imports the contract (schemas) and nothing that talks to a server. The column tuples match
sink/migrations; tests/integration/test_sink_schema.py checks both agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import orjson

from schemas import (
    REQUEST_ID_REUSED,
    RESULT_STATUSES,
    ConsumedRecord,
    DeadLetter,
    ErrorInfo,
    Result,
    Status,
    decode_result,
    known,
    peek_request_id,
)

# --- results --------------------------------------------------------------------------------

RESULT_COLUMNS: Final = (
    "request_id",
    "host",
    "attempt",
    "finished_at",
    "port",
    "ssh_user",  # the contract's "user" (a reserved word in SQL)
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
    "kafka_partition",
    "kafka_offset",
)
FINISHED_AT_INDEX: Final = RESULT_COLUMNS.index("finished_at")
_EMPTY_LABELS: Final = "{}"
# The record's timestamps passed their checks while it was decoded; the plain C parse suffices
# here (asyncpg takes any aware datetime).
_fromisoformat: Final = datetime.fromisoformat
_dumps: Final = orjson.dumps


def result_row(r: Result, partition: int, offset: int) -> tuple[Any, ...]:
    """The results row for `r`, read from Kafka at `partition` and `offset`: output stays in the
    contract's text + encoding form (never raw NUL)."""
    error = r.error
    labels = r.labels
    return (
        r.request_id,
        r.host,
        r.attempt,
        _fromisoformat(r.finished_at),
        r.port,
        r.user,
        r.status,
        r.exit_status,
        r.exit_signal,
        r.stdout,
        r.stdout_encoding,
        r.stderr,
        r.stderr_encoding,
        r.stdout_bytes,
        r.stderr_bytes,
        r.stdout_truncated,
        r.stderr_truncated,
        r.stdout_sha256,
        r.stderr_sha256,
        _fromisoformat(r.started_at),
        r.duration_ms,
        None if error is None else error.type,
        None if error is None else error.message,
        r.collector,
        _dumps(labels).decode() if labels else _EMPTY_LABELS,
        partition,
        offset,
    )


def decode_result_record(value: bytes | None, partition: int, offset: int) -> tuple[Any, ...]:
    """The results row for a fleetrun.result/1 message; SchemaError as from decode_result."""
    return result_row(decode_result(value), partition, offset)


# --- requests (from status records) -----------------------------------------------------------

COUNT_COLUMNS: Final = tuple(f"count_{status}" for status in RESULT_STATUSES)
REQUEST_COLUMNS: Final = (
    "request_id",
    "principal",
    "command",
    "targets",
    "labels",
    "submitted_at",
    "accepted_at",
    "rejected_at",
    "reject_reason",
    "completed_at",
    "targets_total",
    "duration_ms",
    *COUNT_COLUMNS,
    "collector",
    "cancelled_by",
    "cancel_reason",
    "first_status_at",
    "last_status_at",
    "key_fingerprint",
    "verified",
    "policy_rule",
    "template",
    "params",
)


def request_row(s: Status) -> tuple[Any, ...]:
    """What one status record says about its request, in REQUEST_COLUMNS order. The statuses of
    a request are merged in SQL (sink/store.py), whatever their order or number."""
    if s.state == "rejected" and (known(s.reason) or "").startswith(REQUEST_ID_REUSED):
        # About a second record that reused the id: the stored request stays as it is (every
        # column NULL merges as "nothing new", see sink/store.py).
        return (s.request_id, *(None,) * (len(REQUEST_COLUMNS) - 1))
    at = _fromisoformat(s.at)
    submitted_at = known(s.submitted_at)
    targets = known(s.targets)
    labels = known(s.labels)
    counts = known(s.counts)
    completed = s.state == "completed"
    return (
        s.request_id,
        known(s.principal),
        known(s.command),
        None if targets is None else list(targets),
        None if labels is None else _dumps(labels).decode(),
        None if submitted_at is None else _fromisoformat(submitted_at),
        at if s.state == "accepted" else None,
        at if s.state == "rejected" else None,
        known(s.reason),
        at if completed else None,
        known(s.targets_total),
        known(s.duration_ms) if completed else None,
        *(
            (None,) * len(COUNT_COLUMNS)
            if counts is None
            else (getattr(counts, status) for status in RESULT_STATUSES)
        ),
        s.collector,
        known(s.cancelled_by),
        known(s.cancel_reason),
        at,
        at,
        known(s.key_fingerprint),
        known(s.verified),
        known(s.policy_rule),
        known(s.template),
        None if (params := known(s.params)) is None else _dumps(params).decode(),
    )


# --- dead letters --------------------------------------------------------------------------------

DEAD_LETTER_COLUMNS: Final = (
    "source_topic",
    "source_partition",
    "source_offset",
    "source_timestamp",
    "request_id",
    "key",
    "value",
    "error_type",
    "error_message",
    "stage",
    "instance",
    "dead_at",
)


def dead_letter(record: ConsumedRecord, error: ErrorInfo, *, instance: str) -> DeadLetter:
    """The dead letter for a record the sink cannot store, keeping its bytes as they came."""
    return DeadLetter.of(
        record, error, stage="sink", instance=instance, request_id=peek_request_id(record.value)
    )


def dead_letter_row(d: DeadLetter) -> tuple[Any, ...]:
    """Values in DEAD_LETTER_COLUMNS order."""
    return (
        d.source_topic,
        d.partition,
        d.offset,
        None if d.source_timestamp is None else _fromisoformat(d.source_timestamp),
        d.request_id,
        d.key,
        d.value,
        d.error.type,
        d.error.message,
        d.stage,
        d.instance,
        _fromisoformat(d.at),
    )
