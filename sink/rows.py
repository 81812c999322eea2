"""Wire records → database rows, and the merge of status records into one request row.

Pure: imports the contract (schemas) and nothing that talks to a server. Column tuples here
match sink/migrations; tests check both agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

import orjson

from schemas import (
    RESULT_ROW_FIELDS,
    RESULT_STATUSES,
    ConsumedRecord,
    DeadLetter,
    ErrorInfo,
    Result,
    Status,
    decode_result_row,
    encode_output,
    peek_request_id,
)

R = TypeVar("R")  # what a merged status came with (its consumed record, in the sink)
SourceRecord = ConsumedRecord  # where a stored row or dead letter came from


# --- results --------------------------------------------------------------------------------

# The fields of schemas.fastpath.decode_result_row, then where the record was read.
RESULT_COLUMNS: Final = (
    *("ssh_user" if name == "user" else name for name in RESULT_ROW_FIELDS),
    "kafka_partition",
    "kafka_offset",
)
_EMPTY_LABELS: Final = "{}"
_EMPTY_OUTPUT: Final = ("", "utf-8")


# decode_result_record(value, partition, offset): the results row for a result message;
# SchemaError as from schemas.decode_result. The sink's hot path, so the fast path itself (no
# Result is built) rather than a wrapper around it: it appends where the record was read.
decode_result_record: Final = decode_result_row


def result_row(r: Result, partition: int, offset: int) -> tuple[Any, ...]:
    """The results row for `r`: output in the contract's text + encoding form (never raw NUL)."""
    # Empty streams are the common case for stderr: skip the encoder for them.
    stdout, stdout_encoding = encode_output(r.stdout) if r.stdout else _EMPTY_OUTPUT
    stderr, stderr_encoding = encode_output(r.stderr) if r.stderr else _EMPTY_OUTPUT
    error = r.error
    return (
        r.request_id,
        r.host,
        r.attempt,
        r.finished_at,
        r.port,
        r.user,
        r.status,
        r.exit_status,
        r.exit_signal,
        stdout,
        stdout_encoding,
        stderr,
        stderr_encoding,
        r.stdout_bytes,
        r.stderr_bytes,
        r.stdout_truncated,
        r.stderr_truncated,
        r.stdout_sha256,
        r.stderr_sha256,
        r.started_at,
        r.duration_ms,
        None if error is None else error.type,
        None if error is None else error.message,
        r.collector,
        labels_json(r.labels),
        partition,
        offset,
    )


FINISHED_AT_INDEX: Final = RESULT_COLUMNS.index("finished_at")

# --- requests (from status records) -----------------------------------------------------------

COUNT_COLUMNS: Final = tuple(f"count_{status}" for status in RESULT_STATUSES)


@dataclass(frozen=True, slots=True)
class RequestRow:
    """What the status records of one request say about it, merged.

    merge() is commutative, associative and idempotent, so statuses may arrive in any order,
    twice, or across flushes; the SQL upsert in sink/store.py applies the same rules.
    """

    request_id: str
    first_status_at: datetime
    last_status_at: datetime
    principal: str | None = None
    command: str | None = None
    targets: tuple[str, ...] | None = None
    labels: str | None = None  # JSON text
    submitted_at: datetime | None = None
    accepted_at: datetime | None = None
    rejected_at: datetime | None = None
    reject_reason: str | None = None
    completed_at: datetime | None = None
    targets_total: int | None = None
    duration_ms: int | None = None
    counts: tuple[int, ...] | None = None  # in RESULT_STATUSES order
    collector: str | None = None

    @classmethod
    def of(cls, s: Status) -> RequestRow:
        """The row one status record describes."""
        return cls(
            request_id=s.request_id,
            first_status_at=s.at,
            last_status_at=s.at,
            principal=s.principal,
            command=s.command,
            targets=s.targets,
            labels=None if s.labels is None else orjson.dumps(s.labels).decode(),
            submitted_at=s.submitted_at,
            accepted_at=s.at if s.state == "accepted" else None,
            rejected_at=s.at if s.state == "rejected" else None,
            reject_reason=s.reason,
            completed_at=s.at if s.state == "completed" else None,
            targets_total=s.targets_total,
            duration_ms=s.duration_ms if s.state == "completed" else None,
            counts=None if s.counts is None else tuple(s.counts.as_dict().values()),
            collector=s.collector,
        )

    def merge(self, other: RequestRow) -> RequestRow:
        """Both rows' facts: earliest accept/reject, the latest completion's counts."""
        if other.request_id != self.request_id:
            raise ValueError("merging rows of different requests")
        # The completed status carries counts and duration; a later one supersedes an earlier
        # (a request re-run after a collector crash completes again).
        done = _later_completion(self, other)
        return dataclasses.replace(
            self,
            first_status_at=min(self.first_status_at, other.first_status_at),
            last_status_at=max(self.last_status_at, other.last_status_at),
            principal=_first(self.principal, other.principal),
            command=_first(self.command, other.command),
            targets=_first(self.targets, other.targets),
            labels=_first(self.labels, other.labels),
            submitted_at=_least(self.submitted_at, other.submitted_at),
            accepted_at=_least(self.accepted_at, other.accepted_at),
            rejected_at=_least(self.rejected_at, other.rejected_at),
            reject_reason=_first(self.reject_reason, other.reject_reason),
            completed_at=done.completed_at,
            targets_total=_first(
                done.targets_total, _first(self.targets_total, other.targets_total)
            ),
            duration_ms=done.duration_ms,
            counts=done.counts,
            collector=_first(self.collector, other.collector),
        )

    def as_tuple(self) -> tuple[Any, ...]:
        """Values in REQUEST_COLUMNS order."""
        counts = self.counts if self.counts is not None else (None,) * len(COUNT_COLUMNS)
        return (
            self.request_id,
            self.principal,
            self.command,
            None if self.targets is None else list(self.targets),
            self.labels,
            self.submitted_at,
            self.accepted_at,
            self.rejected_at,
            self.reject_reason,
            self.completed_at,
            self.targets_total,
            self.duration_ms,
            *counts,
            self.collector,
            self.first_status_at,
            self.last_status_at,
        )


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
    "first_status_at",
    "last_status_at",
)


def _first(a: Any, b: Any) -> Any:
    # Details are the same in every status of one request; take whichever is known.
    return a if a is not None else b


def _least(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)


def _later_completion(a: RequestRow, b: RequestRow) -> RequestRow:
    if a.completed_at is None:
        return b
    if b.completed_at is None:
        return a
    # Equal times: pick by content so the result does not depend on the order of arrival.
    return max(a, b, key=lambda r: (r.completed_at, r.duration_ms or 0, r.counts or ()))


def merge_requests(statuses: Iterable[tuple[Status, R]]) -> list[tuple[RequestRow, list[R]]]:
    """One merged row per request_id, with the records of every status behind it."""
    merged: dict[str, tuple[RequestRow, list[R]]] = {}
    for status, record in statuses:
        row = RequestRow.of(status)
        seen = merged.get(status.request_id)
        if seen is None:
            merged[status.request_id] = (row, [record])
        else:
            seen[1].append(record)
            merged[status.request_id] = (seen[0].merge(row), seen[1])
    return list(merged.values())


def merge_statuses(statuses: Iterable[Status]) -> dict[str, RequestRow]:
    """One merged row per request_id."""
    return {row.request_id: row for row, _ in merge_requests((s, None) for s in statuses)}


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


def dead_letter(
    record: SourceRecord, error: ErrorInfo, *, instance: str, at: datetime | None = None
) -> DeadLetter:
    """The dead letter for a record the sink cannot store, keeping its bytes as they came."""
    return DeadLetter.of(
        record,
        error,
        stage="sink",
        instance=instance,
        request_id=peek_request_id(record.value),
        at=at,
    )


def dead_letter_row(d: DeadLetter) -> tuple[Any, ...]:
    """Values in DEAD_LETTER_COLUMNS order."""
    return (
        d.source_topic,
        d.partition,
        d.offset,
        d.source_timestamp,
        d.request_id,
        d.key,
        d.value,
        d.error.type,
        d.error.message,
        d.stage,
        d.instance,
        d.at,
    )


def labels_json(labels: Mapping[str, str]) -> str:
    """Labels as the JSON text a jsonb column takes."""
    return orjson.dumps(labels).decode() if labels else _EMPTY_LABELS
