"""One request record, start to finish: decode → plan → accepted → fan out → results → completed.

Bad input executes nothing: it goes to the dead-letter topic, and a `rejected` status says why
when the request_id can be read. `handle` returns only once every record it published has been
acknowledged, which is what allows the caller to commit the request's offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Final, Generic, Literal

import msgspec

import schemas
from collector.errors import CollectorError, RecordTooLarge
from collector.fanout import Executor, FanOut, H, Plan, Resolver, plan_request
from collector.kafka import Publisher, Topics
from collector.metrics import CollectorMetrics
from collector.shrink import fit_result
from schemas import (
    ConsumedRecord,
    DeadLetter,
    ErrorInfo,
    Request,
    Result,
    ResultStatus,
    SchemaError,
    Status,
    StatusCounts,
    limits,
)

log = logging.getLogger("fleetrun.collector")

# What became of a request record (a request's per-host outcomes are collector.outcome's).
Disposition = Literal["completed", "rejected", "dead_lettered"]
_NO_USER: Final = "unknown"


class _Acks:
    """The acknowledgements a request waits for; remembers the first permanent failure."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None

    def add(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coro)
        task.add_done_callback(self._done)
        self.tasks.append(task)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()

    def check(self) -> None:
        """Raise the first permanent publish failure, if any (stops the request early)."""
        if self.failure is not None:
            raise self.failure

    async def wait(self) -> None:
        """Every acknowledgement, or the first failure once all have settled."""
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.check()

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class RequestHandler(Generic[H]):
    """Handles one request record at a time (many run concurrently, one task each)."""

    def __init__(
        self,
        *,
        collector: str,
        topics: Topics,
        publisher: Publisher,
        executor: Executor[H],
        inventory: Resolver[H],
        metrics: CollectorMetrics,
        max_message_bytes: int,
        default_user: str | None,
    ) -> None:
        self.collector = collector
        self.topics = topics
        self.publisher = publisher
        self.inventory = inventory
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.fanout: FanOut[H] = FanOut(
            executor, collector=collector, default_user=default_user or _NO_USER
        )

    async def handle(self, record: ConsumedRecord) -> Disposition:
        """Process one record; returns once all its output is acknowledged by Kafka."""
        try:
            request = schemas.decode_request(record.value)
        except SchemaError as exc:
            return await self._refuse(record, exc, None)
        try:
            plan = plan_request(request, self.inventory)
        except SchemaError as exc:  # TargetError: unknown group, too many hosts, no hosts
            return await self._refuse(record, exc, request)
        try:
            await self._run(request, plan)
        except (asyncio.CancelledError, CollectorError):
            raise  # shutdown / revocation, or Kafka refusing records: the offset stays open
        except Exception as exc:
            # A bug, not bad input; the record is kept in the DLQ with what went wrong rather
            # than retried forever by every collector of the group.
            log.exception("request failed inside the collector", extra=_ids(request))
            return await self._refuse(record, exc, request)
        self.metrics.requests.labels("completed").inc()
        return "completed"

    async def _run(self, request: Request, plan: Plan[H]) -> None:
        started = time.monotonic()
        key = request.request_id.encode()
        acks = _Acks()
        accepted = Status.accepted(request, targets_total=plan.total, collector=self.collector)
        # Sent without waiting: the status partition keeps accepted before completed, and the
        # completed status is only sent once this acknowledgement (and every result's) is in.
        acks.add(self.publisher.publish(self.topics.status, key, schemas.encode(accepted)))
        log.info(
            "request accepted",
            extra=_ids(request) | {"targets_total": plan.total, "command": request.command},
        )

        async def publish_result(result: Result, value: bytes) -> None:
            await self.publisher.publish(
                self.topics.results, key, value, request_id=request.request_id, host=result.host
            )
            self.metrics.results.labels(result.status).inc()

        published: list[ResultStatus] = []

        async def on_result(result: Result) -> None:
            acks.check()  # Kafka refused a record for good: stop starting hosts
            result, value = self._encode_result(result)
            published.append(result.status)  # counted as published (a replacement may differ)
            acks.add(publish_result(result, value))
            _log_result(request, result)

        try:
            await self.fanout.run(plan, on_result)
            await acks.wait()
        except BaseException:
            await acks.cancel()
            raise
        duration_ms = int((time.monotonic() - started) * 1000)
        counts = StatusCounts.of(published)
        completed = Status.completed(
            request.request_id, counts, duration_ms=duration_ms, collector=self.collector
        )
        await self.publisher.publish(self.topics.status, key, schemas.encode(completed))
        log.info(
            "request completed",
            extra=_ids(request)
            | {"duration_ms": duration_ms}
            | {k: v for k, v in counts.as_dict().items() if v},
        )

    def _encode_result(self, result: Result) -> tuple[Result, bytes]:
        try:
            return fit_result(result, self.max_message_bytes)
        except (SchemaError, ValueError) as exc:
            # The executor built something the contract refuses: the host still gets its one
            # final result, saying so, rather than none.
            log.error("result not encodable", extra=_ids(result) | {"error": str(exc)})
            replacement = msgspec.structs.replace(
                result,
                status="error",
                exit_status=None,
                exit_signal=None,
                stdout="",
                stderr="",
                stdout_encoding="utf-8",
                stderr_encoding="utf-8",
                stdout_truncated=result.stdout_bytes > 0,
                stderr_truncated=result.stderr_bytes > 0,
                error=ErrorInfo.bounded("InvalidResult", f"result not encodable: {exc}"),
            )
            return replacement, schemas.encode(replacement)

    async def _refuse(
        self, record: ConsumedRecord, exc: Exception, request: Request | None
    ) -> Disposition:
        request_id = request.request_id if request else schemas.peek_request_id(record.value)
        error = ErrorInfo.from_exception(exc)
        await self._dead_letter(record, error, request_id)
        extra = {"request_id": request_id or "", "offset": record.offset, "error": str(exc)}
        log.warning("request refused", extra=extra)
        if request_id is None:
            self.metrics.requests.labels("dead_lettered").inc()
            return "dead_lettered"
        rejected = Status.rejected(request_id, str(exc), collector=self.collector, request=request)
        value = schemas.encode(rejected)
        await self.publisher.publish(self.topics.status, request_id.encode(), value)
        self.metrics.requests.labels("rejected").inc()
        return "rejected"

    async def _dead_letter(
        self, record: ConsumedRecord, error: ErrorInfo, request_id: str | None
    ) -> None:
        letter = DeadLetter.of(
            record, error, stage="collector", instance=self.collector, request_id=request_id
        )
        try:
            await self.publisher.publish(self.topics.dlq, record.key, schemas.encode(letter))
        except RecordTooLarge:
            # base64 makes a record near the topic's size limit too large for the DLQ: keep the
            # error and where the original is, which the source topic still holds.
            size = len(record.value or b"")
            note = f" (raw value of {size:,} bytes omitted: too large for the dead-letter topic)"
            smaller = msgspec.structs.replace(
                letter,
                value=None,
                error=ErrorInfo(
                    type=error.type,
                    message=error.message[: limits.MAX_ERROR_MESSAGE_CHARS - len(note)] + note,
                ),
            )
            await self.publisher.publish(self.topics.dlq, record.key, schemas.encode(smaller))
        self.metrics.dead_letters.inc()


def _ids(item: Request | Result) -> dict[str, str]:
    if isinstance(item, Result):
        return {"request_id": item.request_id, "host": item.host}
    return {"request_id": item.request_id}


def _log_result(request: Request, result: Result) -> None:
    extra: Mapping[str, object] = {
        "request_id": request.request_id,
        "host": result.host,
        "status": result.status,
        "attempt": result.attempt,
        "exit_status": result.exit_status,
        "duration_ms": result.duration_ms,
    }
    if result.error is not None:
        extra = {**extra, "error": result.error.message}
    # Failures matter to an operator; successes only when debugging (one line per host is
    # a real cost at hundreds of results per second).
    log.log(logging.DEBUG if result.status == "ok" else logging.INFO, "host finished", extra=extra)
