"""Typed, immutable records for the four wire messages (fleetrun.*/1).

Records hold Python values: timezone-aware datetimes, captured output as bytes, tuples for lists.
The codec (schemas.codec) turns them into JSON and back; schemas/*.schema.json define the wire.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal, Protocol, get_args

from schemas import limits

ResultStatus = Literal[
    "ok",
    "failed",
    "timeout",
    "unreachable",
    "auth_failed",
    "host_key_mismatch",
    "skipped",
    "expired",
    "error",
]
RESULT_STATUSES: Final[tuple[ResultStatus, ...]] = get_args(ResultStatus)
StatusState = Literal["accepted", "rejected", "completed"]
STATUS_STATES: Final[tuple[StatusState, ...]] = get_args(StatusState)
DeadLetterStage = Literal["collector", "sink"]
DEAD_LETTER_STAGES: Final[tuple[DeadLetterStage, ...]] = get_args(DeadLetterStage)

REQUEST_SCHEMA: Final = "fleetrun.request/1"
RESULT_SCHEMA: Final = "fleetrun.result/1"
STATUS_SCHEMA: Final = "fleetrun.status/1"
DEAD_LETTER_SCHEMA: Final = "fleetrun.dead_letter/1"

EMPTY_SHA256: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def fit_text(text: str, limit: int) -> str:
    """`text` as the contract takes it: NUL written as \\0, cut to `limit` characters with '…'."""
    text = text.replace("\x00", "\\0")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """What went wrong: a short stable type name and a message for people."""

    type: str
    message: str

    @classmethod
    def bounded(cls, error_type: str, message: str) -> ErrorInfo:
        """An ErrorInfo within the contract's bounds, whatever the text: no NUL, lengths cut."""
        error_type = (error_type.replace("\x00", "") or "Error")[: limits.MAX_ERROR_TYPE_CHARS]
        return cls(type=error_type, message=fit_text(message, limits.MAX_ERROR_MESSAGE_CHARS))

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Describe `exc` within the contract's bounds (no NUL, message cut to the limit)."""
        return cls.bounded(type(exc).__name__, str(exc))


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """fleetrun.request/1: run `command` on every host `targets` expand to."""

    SCHEMA: ClassVar[str] = REQUEST_SCHEMA

    request_id: str
    submitted_at: datetime
    principal: str
    command: str
    targets: tuple[str, ...]
    expires_at: datetime | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = limits.DEFAULT_TIMEOUT_S
    connect_timeout_s: float = limits.DEFAULT_CONNECT_TIMEOUT_S
    concurrency: int = limits.DEFAULT_CONCURRENCY
    max_errors: int | str | None = None  # a host count, "N%" of the targets, or None: no budget
    max_output_bytes: int = limits.DEFAULT_MAX_OUTPUT_BYTES
    retries: int = limits.DEFAULT_RETRIES
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls, *, principal: str, command: str, targets: Iterable[str], **options: object
    ) -> Request:
        """A request with a fresh random request_id, submitted now."""
        return cls(
            request_id=str(uuid.uuid4()),
            submitted_at=datetime.now(UTC),
            principal=principal,
            command=command,
            targets=tuple(targets),
            **options,  # type: ignore[arg-type]  # checked by the dataclass and the codec
        )

    def error_budget(self, targets_total: int) -> int | None:
        """Failed hosts allowed before the remaining ones are skipped; None means no limit."""
        if self.max_errors is None:
            return None
        if isinstance(self.max_errors, str):
            # Rounded down, so "10%" of 15 hosts tolerates 1 failure, not 2.
            return targets_total * int(self.max_errors.rstrip("%")) // 100
        return self.max_errors


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """fleetrun.result/1: the final outcome of one request on one host (one attempt)."""

    SCHEMA: ClassVar[str] = RESULT_SCHEMA

    # Field order follows DESIGN.md; kw_only lets required fields follow defaulted ones.
    request_id: str
    host: str
    port: int
    user: str
    attempt: int = 1
    status: ResultStatus
    exit_status: int | None = None
    exit_signal: str | None = None
    stdout: bytes = b""  # the captured bytes (head and tail when truncated)
    stderr: bytes = b""
    stdout_bytes: int = 0  # size of the whole stream
    stderr_bytes: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_sha256: str = EMPTY_SHA256  # digest of the whole stream
    stderr_sha256: str = EMPTY_SHA256
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    error: ErrorInfo | None = None
    collector: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusCounts:
    """Final results of a request per status; `total` is the number of targets."""

    ok: int = 0
    failed: int = 0
    timeout: int = 0
    unreachable: int = 0
    auth_failed: int = 0
    host_key_mismatch: int = 0
    skipped: int = 0
    expired: int = 0
    error: int = 0

    @property
    def total(self) -> int:
        """Sum over all statuses."""
        return sum(getattr(self, status) for status in RESULT_STATUSES)

    @classmethod
    def of(cls, statuses: Iterable[ResultStatus]) -> StatusCounts:
        """Count a sequence of result statuses."""
        counts: Counter[str] = Counter(statuses)
        return cls(**counts)

    def as_dict(self) -> dict[ResultStatus, int]:
        """Status name to count, in RESULT_STATUSES order."""
        return {status: getattr(self, status) for status in RESULT_STATUSES}


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """fleetrun.status/1: a request was accepted, rejected or completed.

    accepted carries the request's details and targets_total; rejected carries reason (and the
    request's details when they could be read); completed carries counts, duration_ms and
    targets_total. Use the constructors below to get each state's fields right.
    """

    SCHEMA: ClassVar[str] = STATUS_SCHEMA

    request_id: str
    state: StatusState
    at: datetime
    collector: str
    submitted_at: datetime | None = None
    principal: str | None = None
    command: str | None = None
    targets: tuple[str, ...] | None = None
    labels: Mapping[str, str] | None = None
    targets_total: int | None = None
    reason: str | None = None
    counts: StatusCounts | None = None
    duration_ms: int | None = None

    @classmethod
    def accepted(
        cls, request: Request, *, targets_total: int, collector: str, at: datetime | None = None
    ) -> Status:
        """The status for a request whose targets expanded to `targets_total` hosts."""
        return cls(
            request_id=request.request_id,
            state="accepted",
            at=at or datetime.now(UTC),
            collector=collector,
            submitted_at=request.submitted_at,
            principal=request.principal,
            command=request.command,
            targets=request.targets,
            labels=request.labels,
            targets_total=targets_total,
        )

    @classmethod
    def rejected(
        cls,
        request_id: str,
        reason: str,
        *,
        collector: str,
        request: Request | None = None,
        at: datetime | None = None,
    ) -> Status:
        """The status for a request that will not run; pass `request` when it was decoded."""
        reason = fit_text(reason, limits.MAX_REASON_CHARS) or "rejected"
        return cls(
            request_id=request_id,
            state="rejected",
            at=at or datetime.now(UTC),
            collector=collector,
            submitted_at=request.submitted_at if request else None,
            principal=request.principal if request else None,
            command=request.command if request else None,
            targets=request.targets if request else None,
            labels=request.labels if request else None,
            reason=reason,
        )

    @classmethod
    def completed(
        cls,
        request_id: str,
        counts: StatusCounts,
        *,
        duration_ms: int,
        collector: str,
        at: datetime | None = None,
    ) -> Status:
        """The status for a request whose every target has its final result."""
        return cls(
            request_id=request_id,
            state="completed",
            at=at or datetime.now(UTC),
            collector=collector,
            targets_total=counts.total,
            counts=counts,
            duration_ms=duration_ms,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """fleetrun.dead_letter/1: a record that could not be processed, kept byte for byte."""

    SCHEMA: ClassVar[str] = DEAD_LETTER_SCHEMA

    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: ErrorInfo
    stage: DeadLetterStage
    at: datetime
    instance: str
    request_id: str | None = None  # read from the record when possible, for correlation
    source_timestamp: datetime | None = None

    @classmethod
    def of(
        cls,
        record: ConsumedRecord,
        error: ErrorInfo,
        *,
        stage: DeadLetterStage,
        instance: str,
        request_id: str | None,
        at: datetime | None = None,
    ) -> DeadLetter:
        """The dead letter for a consumed record, keeping its key and value byte for byte."""
        timestamp = record.timestamp  # Kafka's "no timestamp" is -1
        return cls(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            error=error,
            stage=stage,
            at=at or datetime.now(UTC),
            instance=instance[: limits.MAX_INSTANCE_CHARS],
            request_id=request_id,
            source_timestamp=(
                datetime.fromtimestamp(timestamp / 1000, UTC) if timestamp >= 0 else None
            ),
        )


class ConsumedRecord(Protocol):
    """The fields of a consumed Kafka record (aiokafka's ConsumerRecord) that services read."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # milliseconds since the epoch, -1 when absent
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


Message = Request | Result | Status | DeadLetter
