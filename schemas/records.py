"""The five wire records (fleetrun.*/1) as frozen msgspec Structs: the contract, once, in Python.

Each field's type carries its bounds (schemas.fields); `__post_init__` holds the rules a field
type cannot state: the schema files' if/then rules and the extra rules of schemas/README.md
("Rules beyond the schema files"). msgspec runs both while decoding and when a record is built
in Python, so a record that exists is valid. Records hold the wire form: timestamps as RFC 3339
text (schemas.timestamps parses them), output as text plus its encoding (`stdout_data` gives
the bytes back). schemas.codec turns records into JSON and back.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Protocol, TypeVar

from msgspec import UNSET, Meta, Struct, UnsetType

from schemas import limits
from schemas.chunks import Output
from schemas.errors import SchemaError
from schemas.fields import (
    HOST,
    LABEL_NAME,
    NO_NUL,
    NOT_BLANK,
    RESULT_STATUSES,
    SHA256,
    SIGNAL,
    UUID,
    Attempt,
    ByteCount,
    CancelReason,
    Command,
    Concurrency,
    ConnectTimeoutS,
    DeadLetterStage,
    Env,
    ErrorBudget,
    ErrorMessage,
    ErrorType,
    ExitStatus,
    Fingerprint,
    Host,
    HostCount,
    Instance,
    Labels,
    MaxOutputBytes,
    Milliseconds,
    Offset,
    OutputEncoding,
    OutputText,
    Params,
    Partition,
    PolicyRule,
    Port,
    Principal,
    Reason,
    ResultStatus,
    Retries,
    Sha256,
    Signal,
    Signature,
    StatusState,
    SubmittedTarget,
    TargetExpression,
    TemplateName,
    TimeoutS,
    Timestamp,
    Topic,
    User,
    Uuid,
)
from schemas.output import decode_base64, decode_output
from schemas.patterns import check_patterns, plan
from schemas.shard import Shard
from schemas.targets import check_targets
from schemas.timestamps import (
    check_timestamps,
    format_timestamp,
    now_timestamp,
    parse_timestamp,
)

REQUEST_SCHEMA: Final = "fleetrun.request/1"
RESULT_SCHEMA: Final = "fleetrun.result/1"
STATUS_SCHEMA: Final = "fleetrun.status/1"
DEAD_LETTER_SCHEMA: Final = "fleetrun.dead_letter/1"
CANCEL_SCHEMA: Final = "fleetrun.cancel/1"

EMPTY_SHA256: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

T = TypeVar("T")
_MAX_OUTPUT: Final = limits.MAX_OUTPUT_BYTES


def fit_text(text: str, limit: int) -> str:
    """`text` as the contract takes it: NUL written as \\0, an unpaired surrogate as \\udcff
    (UTF-8 JSON cannot carry one), cut to `limit` characters with '…'."""
    text = text.replace("\x00", "\\0")
    if not text.isascii():
        # str() of an OSError names paths decoded with surrogateescape: "\udcff" for byte 0xff.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# The reason of a `rejected` status about a *second* record that reused a request_id with other
# content: such a status says nothing about the request that owns the id (consumers that keep
# request rows, like the sink, leave that row as it is).
REQUEST_ID_REUSED: Final = "request_id reused with different content"


def known(value: T | UnsetType) -> T | None:
    """A status field's value, or None when the record does not carry it."""
    return None if isinstance(value, UnsetType) else value


class ErrorInfo(Struct, frozen=True, kw_only=True, gc=False):
    """What went wrong: a short stable type name and a message for people."""

    type: ErrorType
    message: ErrorMessage

    def __post_init__(self) -> None:
        check_patterns(self, _ERROR_CHECKS)

    @classmethod
    def bounded(cls, error_type: str, message: str) -> ErrorInfo:
        """An ErrorInfo within the contract's bounds, whatever the text: no NUL, lengths cut."""
        error_type = (error_type.replace("\x00", "") or "Error")[: limits.MAX_ERROR_TYPE_CHARS]
        return cls(type=error_type, message=fit_text(message, limits.MAX_ERROR_MESSAGE_CHARS))

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Describe `exc` within the contract's bounds (no NUL, message cut to the limit)."""
        return cls.bounded(type(exc).__name__, str(exc))


class Request(Struct, frozen=True, kw_only=True, gc=False, tag_field="schema", tag=REQUEST_SCHEMA):
    """fleetrun.request/1: run `command` on every host `targets` expand to."""

    SCHEMA: ClassVar[str] = REQUEST_SCHEMA

    request_id: Uuid
    submitted_at: Timestamp
    expires_at: Timestamp | None = None
    principal: Principal
    # Exactly one of `command` and `template`: a template is rendered by the collector from its
    # policy (typed parameters, shell-quoted), so the producer never writes the line itself.
    command: Command | UnsetType = UNSET
    targets: Annotated[
        tuple[TargetExpression, ...], Meta(min_length=1, max_length=limits.MAX_TARGET_EXPRESSIONS)
    ]
    env: Env = {}
    timeout_s: TimeoutS = limits.DEFAULT_TIMEOUT_S
    connect_timeout_s: ConnectTimeoutS = limits.DEFAULT_CONNECT_TIMEOUT_S
    concurrency: Concurrency = limits.DEFAULT_CONCURRENCY
    max_errors: ErrorBudget = None  # a host count, "N%" of the targets, or None: no budget
    max_output_bytes: MaxOutputBytes = limits.DEFAULT_MAX_OUTPUT_BYTES
    retries: Retries = limits.DEFAULT_RETRIES
    labels: Labels = {}
    # Safe to run twice: a host whose outcome a crashed collector left unknown runs again (as
    # attempt + 1) instead of being reported `outcome_unknown`.
    idempotent: bool = False
    # Publish output chunks (fleetrun.output/1) while commands run; the results are unchanged.
    stream_output: bool = False
    template: TemplateName | UnsetType = UNSET
    params: Params | UnsetType = UNSET  # the template's parameters, name → value (text)
    # Armored SSHSIG over the request's canonical bytes (schemas.signing).
    signature: Signature | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_patterns(self, _REQUEST_CHECKS)
        command = self.command
        if isinstance(command, UnsetType):
            if isinstance(self.template, UnsetType):
                raise SchemaError(
                    "command", "is required unless template names a template", "required"
                )
        elif not isinstance(self.template, UnsetType):
            raise SchemaError(
                "command",
                "must be absent when template is given (the collector renders the template)",
                "not",
            )
        elif not NOT_BLANK.matches(command):
            raise SchemaError("command", NOT_BLANK.message, "pattern")
        if not isinstance(self.params, UnsetType) and isinstance(self.template, UnsetType):
            raise SchemaError("template", "is required when params are given", "required")
        submitted = parse_timestamp(self.submitted_at, "submitted_at")
        expires = self.expires_at
        if expires is not None and parse_timestamp(expires, "expires_at") <= submitted:
            raise SchemaError(
                "expires_at",
                "must be after submitted_at (the request would expire before it was sent)",
                "expires_at",
            )
        check_targets(self.targets)

    @classmethod
    def new(
        cls,
        *,
        principal: str,
        command: str | UnsetType = UNSET,
        targets: Iterable[str],
        **options: object,
    ) -> Request:
        """A request submitted now, with a fresh random request_id unless `options` has one."""
        fields: dict[str, object] = {
            "request_id": str(uuid.uuid4()),
            "submitted_at": now_timestamp(),
            **options,
        }
        return cls(
            principal=principal,
            command=command,
            targets=tuple(targets),
            **fields,  # type: ignore[arg-type]  # checked by msgspec and __post_init__
        )

    @property
    def command_line(self) -> str:
        """The shell line to run: `command`, or the rendered template (the collector renders
        a template request into one with `command` before anything runs)."""
        if isinstance(self.command, UnsetType):
            raise ValueError(f"request {self.request_id}: template {self.template!r} not rendered")
        return self.command

    def error_budget(self, targets_total: int) -> int | None:
        """Failed hosts allowed before the remaining ones are skipped; None means no limit."""
        if self.max_errors is None:
            return None
        if isinstance(self.max_errors, str):
            # Rounded down, so "10%" of 15 hosts tolerates 1 failure, not 2.
            return targets_total * int(self.max_errors.rstrip("%")) // 100
        return self.max_errors


class Result(Struct, frozen=True, kw_only=True, gc=False, tag_field="schema", tag=RESULT_SCHEMA):
    """fleetrun.result/1: the final outcome of one request on one host (one attempt)."""

    SCHEMA: ClassVar[str] = RESULT_SCHEMA

    request_id: Uuid
    host: Host
    port: Port
    user: User
    attempt: Attempt
    status: ResultStatus
    exit_status: ExitStatus | None
    exit_signal: Signal | None
    stdout: OutputText  # the captured bytes (head and tail when truncated), as `*_encoding` says
    stderr: OutputText
    stdout_encoding: OutputEncoding
    stderr_encoding: OutputEncoding
    stdout_bytes: ByteCount  # size of the whole stream
    stderr_bytes: ByteCount
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_sha256: Sha256  # digest of the whole stream
    stderr_sha256: Sha256
    started_at: Timestamp
    finished_at: Timestamp
    duration_ms: Milliseconds
    error: ErrorInfo | None
    collector: Instance
    labels: Labels

    def __post_init__(self) -> None:
        # Patterns, the schema file's if/then rules, then the extra rules in README's order.
        # The sink decodes every result, so the pattern checks of plan(Result) are written out
        # here rather than looped over (a third of the decode time; test_schemas_records
        # proves each one is enforced).
        v = self.request_id
        if v not in _UUIDS and not UUID.matches(v):
            raise SchemaError("request_id", UUID.message, "pattern")
        v = self.host
        if v not in _HOSTS and not HOST.matches(v):
            raise SchemaError("host", HOST.message, "pattern")
        if "\x00" in self.user:
            raise SchemaError("user", NO_NUL.message, "pattern")
        signal = self.exit_signal
        if signal is not None and not SIGNAL.matches(signal):
            raise SchemaError("exit_signal", SIGNAL.message, "pattern")
        v = self.stdout_sha256
        if v not in _DIGESTS and not SHA256.matches(v):
            raise SchemaError("stdout_sha256", SHA256.message, "pattern")
        v = self.stderr_sha256
        if v not in _DIGESTS and not SHA256.matches(v):
            raise SchemaError("stderr_sha256", SHA256.message, "pattern")
        # started_at and finished_at: their pattern is checked with the calendar, below.
        if "\x00" in self.collector:
            raise SchemaError("collector", NO_NUL.message, "pattern")
        labels = self.labels
        if labels and not (
            (_LABEL_NAMES.issuperset(labels) or LABEL_NAME.all_match(labels))
            and "\x00" not in "".join(labels.values())
        ):
            check_patterns(self, _RESULT_CHECKS)  # raises the precise error
        status = self.status
        if status == "ok":
            if self.exit_status != 0:
                raise SchemaError("exit_status", 'must be 0 when status is "ok"', "const")
            if self.exit_signal is not None:
                raise SchemaError("exit_signal", 'must be null when status is "ok"', "const")
        elif status == "error" and self.error is None:
            raise SchemaError(
                "error",
                'must say what went wrong ({"type": ..., "message": ...}) when status is "error"',
                "not",
            )
        # Whole ASCII text, the common stream, is settled by one test; anything else in full.
        text = self.stdout
        if not (
            self.stdout_encoding == "utf-8"
            and len(text) == self.stdout_bytes <= _MAX_OUTPUT
            and text.isascii()
            and "\x00" not in text
            and not self.stdout_truncated
        ):
            _check_stream(
                "stdout",
                _captured_size("stdout", text, self.stdout_encoding),
                self.stdout_bytes,
                self.stdout_truncated,
            )
        text = self.stderr
        if not (
            self.stderr_encoding == "utf-8"
            and len(text) == self.stderr_bytes <= _MAX_OUTPUT
            and text.isascii()
            and "\x00" not in text
            and not self.stderr_truncated
        ):
            _check_stream(
                "stderr",
                _captured_size("stderr", text, self.stderr_encoding),
                self.stderr_bytes,
                self.stderr_truncated,
            )
        check_timestamps(self.started_at, "started_at", self.finished_at, "finished_at")

    @property
    def stdout_data(self) -> bytes:
        """The captured stdout bytes."""
        return decode_output(self.stdout, self.stdout_encoding)

    @property
    def stderr_data(self) -> bytes:
        """The captured stderr bytes."""
        return decode_output(self.stderr, self.stderr_encoding)


def _captured_size(name: str, text: str, encoding: OutputEncoding) -> int:
    """Bytes the stream's wire text stands for; SchemaError when it breaks its encoding."""
    if encoding == "utf-8":
        if "\x00" in text:
            raise SchemaError(
                name,
                'holds a NUL character, which "utf-8" output never does: such output is sent '
                'as "base64"',
                "pattern",
            )
        if text.isascii():
            return len(text)
        try:
            return len(text.encode())
        except UnicodeEncodeError:
            raise SchemaError(
                name, "holds an unpaired surrogate, which is not UTF-8", "output"
            ) from None
    try:
        return len(decode_base64(text))
    except ValueError as exc:
        raise SchemaError(name, str(exc), "pattern") from None


def _check_stream(name: str, captured: int, total: int, truncated: bool) -> None:
    if captured == total and not truncated and total <= _MAX_OUTPUT:
        return  # the common case: the whole stream was kept
    if captured > _MAX_OUTPUT:
        raise SchemaError(
            name,
            f"holds {captured:,} bytes; the limit per stream is {_MAX_OUTPUT:,}",
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


class StatusCounts(Struct, frozen=True, kw_only=True, gc=False, forbid_unknown_fields=True):
    """Final results of a request per status; `total` is the number of targets."""

    ok: HostCount
    failed: HostCount
    timeout: HostCount
    unreachable: HostCount
    auth_failed: HostCount
    host_key_mismatch: HostCount
    skipped: HostCount
    expired: HostCount
    error: HostCount

    @property
    def total(self) -> int:
        """Sum over all statuses."""
        return sum(getattr(self, status) for status in RESULT_STATUSES)

    @classmethod
    def of(cls, statuses: Iterable[ResultStatus]) -> StatusCounts:
        """Count a sequence of result statuses."""
        counts: Counter[str] = Counter(statuses)
        return cls(**{status: counts[status] for status in RESULT_STATUSES})

    def as_dict(self) -> dict[ResultStatus, int]:
        """Status name to count, in RESULT_STATUSES order."""
        return {status: getattr(self, status) for status in RESULT_STATUSES}


# Fields each state carries (README: `status` fields after `collector` are present by state).
_REQUIRED_BY_STATE: Final[dict[str, tuple[str, ...]]] = {
    "accepted": ("submitted_at", "principal", "command", "targets", "labels", "targets_total"),
    "rejected": ("reason",),
    "completed": ("counts", "duration_ms", "targets_total"),
}


class Status(Struct, frozen=True, kw_only=True, gc=False, tag_field="schema", tag=STATUS_SCHEMA):
    """fleetrun.status/1: a request was accepted, rejected or completed.

    accepted carries the request's details and targets_total; rejected carries reason (and the
    request's details when they could be read); completed carries counts, duration_ms and
    targets_total. Fields a state does not carry are UNSET (left out on the wire, never null);
    `known()` reads them as None. Use the constructors below to get each state's fields right.
    """

    SCHEMA: ClassVar[str] = STATUS_SCHEMA

    request_id: Uuid
    state: StatusState
    at: Timestamp
    collector: Instance
    submitted_at: Timestamp | UnsetType = UNSET
    principal: Principal | UnsetType = UNSET
    command: Command | UnsetType = UNSET
    targets: (
        Annotated[
            tuple[SubmittedTarget, ...],
            Meta(min_length=1, max_length=limits.MAX_TARGET_EXPRESSIONS),
        ]
        | UnsetType
    ) = UNSET
    labels: Labels | UnsetType = UNSET
    targets_total: HostCount | UnsetType = UNSET
    reason: Reason | UnsetType = UNSET
    counts: StatusCounts | UnsetType = UNSET
    duration_ms: Milliseconds | UnsetType = UNSET
    # When a cancel stopped the request (completed), or came before it (rejected): who, and why.
    cancelled_by: Principal | UnsetType = UNSET
    cancel_reason: CancelReason | UnsetType = UNSET
    # Audit of the admission (accepted, rejected): the signing key, whether the signature was
    # verified, the policy rule that allowed or denied, and the template asked for.
    key_fingerprint: Fingerprint | UnsetType = UNSET
    verified: bool | UnsetType = UNSET
    policy_rule: PolicyRule | UnsetType = UNSET
    template: TemplateName | UnsetType = UNSET
    params: Params | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_patterns(self, _STATUS_CHECKS)
        for name in _REQUIRED_BY_STATE[self.state]:
            if getattr(self, name) is UNSET:
                raise SchemaError(name, f'is required when state is "{self.state}"', "required")
        parse_timestamp(self.at, "at")
        if not isinstance(self.submitted_at, UnsetType):
            parse_timestamp(self.submitted_at, "submitted_at")
        counts, total = self.counts, self.targets_total
        if isinstance(counts, StatusCounts) and isinstance(total, int) and counts.total != total:
            raise SchemaError(
                "counts",
                f"add up to {counts.total:,} but targets_total is {total:,}: "
                "every expanded target gets exactly one final result",
                "counts",
            )

    @classmethod
    def accepted(
        cls,
        request: Request,
        *,
        targets_total: int,
        collector: str,
        at: str | None = None,
        audit: Audit | None = None,
    ) -> Status:
        """The status for a request whose targets expanded to `targets_total` hosts."""
        return cls(
            request_id=request.request_id,
            state="accepted",
            at=at or now_timestamp(),
            collector=collector,
            submitted_at=request.submitted_at,
            principal=request.principal,
            command=request.command,
            targets=request.targets,
            labels=request.labels,
            targets_total=targets_total,
            **_audit(request, audit),
        )

    @classmethod
    def rejected(
        cls,
        request_id: str,
        reason: str,
        *,
        collector: str,
        request: Request | None = None,
        cancel: Cancel | None = None,
        at: str | None = None,
        audit: Audit | None = None,
    ) -> Status:
        """The status for a request that will not run; pass `request` when it was decoded, and
        `cancel` when the request is rejected because a cancel for it came first."""
        reason = fit_text(reason, limits.MAX_REASON_CHARS) or "rejected"
        if request is None:
            return cls(
                request_id=request_id,
                state="rejected",
                at=at or now_timestamp(),
                collector=collector,
                reason=reason,
                cancelled_by=_cancelled_by(cancel),
                cancel_reason=_cancel_reason(cancel),
            )
        return cls(
            request_id=request_id,
            state="rejected",
            at=at or now_timestamp(),
            collector=collector,
            submitted_at=request.submitted_at,
            principal=request.principal,
            command=request.command,
            targets=request.targets,
            labels=request.labels,
            reason=reason,
            cancelled_by=_cancelled_by(cancel),
            cancel_reason=_cancel_reason(cancel),
            **_audit(request, audit),
        )

    @classmethod
    def completed(
        cls,
        request_id: str,
        counts: StatusCounts,
        *,
        duration_ms: int,
        collector: str,
        cancel: Cancel | None = None,
        at: str | None = None,
    ) -> Status:
        """The status for a request whose every target has its final result; `cancel` when a
        cancel stopped it (its principal and reason become cancelled_by and cancel_reason)."""
        return cls(
            request_id=request_id,
            state="completed",
            at=at or now_timestamp(),
            collector=collector,
            targets_total=counts.total,
            counts=counts,
            duration_ms=duration_ms,
            cancelled_by=_cancelled_by(cancel),
            cancel_reason=_cancel_reason(cancel),
        )


class Audit(Struct, frozen=True, kw_only=True, gc=False):
    """How a collector admitted or refused a request: who signed it, with which key, and the
    policy rule that decided. Not a wire record: its fields go into accepted/rejected statuses."""

    key_fingerprint: str | None = None
    verified: bool = False
    policy_rule: str | None = None
    # The template asked for, kept here once the request is rendered (command, no template).
    template: str | None = None
    params: dict[str, str] | None = None


def _audit(request: Request, audit: Audit | None) -> dict[str, Any]:
    if audit is None:
        return {}
    fields: dict[str, Any] = {
        "verified": audit.verified,
        "template": request.template if audit.template is None else audit.template,
        "params": request.params if audit.params is None else audit.params,
    }
    if audit.key_fingerprint is not None:
        fields["key_fingerprint"] = audit.key_fingerprint
    if audit.policy_rule is not None:
        fields["policy_rule"] = fit_text(audit.policy_rule, limits.MAX_POLICY_RULE_CHARS)
    return fields


def _cancelled_by(cancel: Cancel | None) -> str | UnsetType:
    return UNSET if cancel is None else cancel.principal


def _cancel_reason(cancel: Cancel | None) -> str | UnsetType:
    return UNSET if cancel is None or cancel.reason is None else cancel.reason


class Cancel(Struct, frozen=True, kw_only=True, gc=False, tag_field="schema", tag=CANCEL_SCHEMA):
    """fleetrun.cancel/1: stop request `request_id` wherever it runs.

    Hosts not started get `skipped`, running commands are killed, and the `completed` status
    says who cancelled (cancelled_by, cancel_reason); a request that arrives after its cancel
    is rejected. `message` is the reason those records give.
    """

    SCHEMA: ClassVar[str] = CANCEL_SCHEMA

    request_id: Uuid
    principal: Principal
    reason: CancelReason | None = None
    submitted_at: Timestamp
    # True: stop starting hosts (they get `skipped`), let running commands finish, and do not
    # count as cancelled; what a sharded request's coordinator sends when the request's error
    # budget is spent across its shards (collector.sharded).
    drain: bool = False

    def __post_init__(self) -> None:
        check_patterns(self, _CANCEL_CHECKS)
        parse_timestamp(self.submitted_at, "submitted_at")

    @classmethod
    def new(cls, request_id: str, *, principal: str, reason: str | None = None) -> Cancel:
        """A cancel submitted now; an empty reason is no reason."""
        return cls(
            request_id=request_id,
            principal=principal,
            reason=reason or None,
            submitted_at=now_timestamp(),
        )

    @property
    def message(self) -> str:
        """Why, in the words "request cancelled by <principal>: <reason>": the reason the
        stopped hosts' results give (skipped: "not started: …", killed: "killed: …"), and that
        of a request rejected because its cancel came first."""
        said = f"request cancelled by {self.principal}"
        return f"{said}: {self.reason}" if self.reason is not None else said


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


class DeadLetter(
    Struct, frozen=True, kw_only=True, gc=False, tag_field="schema", tag=DEAD_LETTER_SCHEMA
):
    """fleetrun.dead_letter/1: a record that could not be processed, kept byte for byte."""

    SCHEMA: ClassVar[str] = DEAD_LETTER_SCHEMA

    source_topic: Topic
    partition: Partition
    offset: Offset
    source_timestamp: Timestamp | None = None
    key: bytes | None  # base64 on the wire (msgspec's bytes are RFC 4648, padded)
    value: bytes | None
    request_id: Uuid | None = None  # read from the record when possible, for correlation
    error: ErrorInfo
    stage: DeadLetterStage
    at: Timestamp
    instance: Instance

    def __post_init__(self) -> None:
        check_patterns(self, _DEAD_LETTER_CHECKS)
        if self.source_timestamp is not None:
            parse_timestamp(self.source_timestamp, "source_timestamp")
        parse_timestamp(self.at, "at")

    @classmethod
    def of(
        cls,
        record: ConsumedRecord,
        error: ErrorInfo,
        *,
        stage: DeadLetterStage,
        instance: str,
        request_id: str | None,
        at: str | None = None,
    ) -> DeadLetter:
        """The dead letter for a consumed record, keeping its key and value byte for byte."""
        timestamp = record.timestamp  # Kafka's "no timestamp" is -1
        return cls(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            source_timestamp=_kafka_time(timestamp) if timestamp >= 0 else None,
            key=record.key,
            value=record.value,
            request_id=request_id,
            error=error,
            stage=stage,
            at=at or now_timestamp(),
            instance=instance[: limits.MAX_INSTANCE_CHARS],
        )


def _kafka_time(milliseconds: int) -> str:
    return format_timestamp(datetime.fromtimestamp(milliseconds / 1000, UTC))


Message = Request | Result | Status | DeadLetter | Cancel | Output | Shard

_UUIDS: Final = UUID.matched
_HOSTS: Final = HOST.matched
_DIGESTS: Final = SHA256.matched
_LABEL_NAMES: Final = LABEL_NAME.matched
_ERROR_CHECKS: Final = plan(ErrorInfo)
_REQUEST_CHECKS: Final = plan(Request)
_RESULT_CHECKS: Final = plan(Result)
_STATUS_CHECKS: Final = plan(Status)
_DEAD_LETTER_CHECKS: Final = plan(DeadLetter)
_CANCEL_CHECKS: Final = plan(Cancel)
