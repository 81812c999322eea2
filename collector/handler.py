"""One request record, start to finish: decode → plan → accepted → fan out → results → completed.

Bad input executes nothing: it goes to the dead-letter topic, and a `rejected` status says why
when the request_id can be read. `handle` returns only once every record it published has been
acknowledged, which is what allows the caller to commit the request's offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Generic, Literal

import msgspec

import schemas
from collector.admission import Admission, Refused
from collector.cancels import Cancels, watch_cancel
from collector.confine import Override
from collector.deadletters import publish_dead_letter
from collector.errors import CollectorError
from collector.fanout import (
    Executor,
    FanOut,
    H,
    Plan,
    Resolver,
    plan_request,
)
from collector.kafka import Publisher, Topics
from collector.ledger import Prior, digest
from collector.ledgered import LedgeredRun
from collector.metrics import CollectorMetrics
from collector.outbox import HandedOver, Out
from collector.resume import (
    REUSED_ID,
    Lane,
    RequestIdReused,
    split_resume,
    unknown_result,
)
from collector.shrink import fit_result
from collector.stop import Stop
from schemas import (
    Audit,
    Cancel,
    ConsumedRecord,
    ErrorInfo,
    Request,
    Result,
    ResultStatus,
    SchemaError,
    Status,
    StatusCounts,
)

if TYPE_CHECKING:
    from collector.sharded import ShardCoordinator

log = logging.getLogger("fleetrun.collector")

# What became of a request record (a request's per-host outcomes are collector.outcome's).
Disposition = Literal["completed", "rejected", "dead_lettered", "duplicate"]
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
        cancels: Cancels | None = None,
        allow_targets: Collection[Override] = (),
        admission: Admission | None = None,
    ) -> None:
        self.collector = collector
        self.admission = admission or Admission()
        self.cancels = cancels
        self.allow_targets = frozenset(allow_targets)  # overrides of the inventory (confine)
        self.stops: dict[str, Stop] = {}  # of the requests running now, to kill them on purpose
        self.topics = topics
        self.publisher = publisher
        self.inventory = inventory
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.fanout: FanOut[H] = FanOut(
            executor, collector=collector, default_user=default_user or _NO_USER
        )
        # Requests past the shard size go to the shards topic instead (collector.sharded).
        self.sharding: ShardCoordinator[H] | None = None

    async def handle(self, record: ConsumedRecord, lane: Lane | None = None) -> Disposition:
        """Process one record; returns once all its output is acknowledged by Kafka.

        With a `lane` (the ledger on), everything goes through the partition's transactional
        outbox and the ledger decides first: a request already run or running is a duplicate
        (nothing published), one whose id was used by other content is rejected, one left
        unfinished by an earlier owner is resumed (see `_run`).
        """
        out: Publisher = self.publisher if lane is None else lane.outbox
        try:
            request = schemas.decode_request(record.value)
        except SchemaError as exc:
            return await self._refuse(out, record, exc, None)
        try:  # signature and freshness before anything else, the ledger included
            audit = self.admission.verify(record.value, request)
        except Refused as exc:
            return await self._refuse(out, record, exc, request, audit=exc.audit)
        prior: Prior | None = None
        content = ""
        new = True
        if lane is not None:
            content = digest(record.value)
            admission = lane.ledger.admit(request.request_id, content)
            if admission == "duplicate":
                return self._duplicate(lane, request, record)
            if admission == "reused":
                reuse = RequestIdReused(
                    f"{REUSED_ID}: {request.request_id} already names another request on this "
                    "partition (the same id with other content never runs; use a new id)"
                )
                return await self._refuse(out, record, reuse, None, reused=request)
            prior = lane.ledger.prior(request.request_id) if admission == "resume" else None
            new = admission == "new"
        try:
            if new:  # a duplicate or a resumed request was fresh when first admitted
                self.admission.check_fresh(request, audit)
        except Refused as exc:
            return await self._refuse(out, record, exc, request, audit=exc.audit)
        cancel = self.cancels.cancelled(request.request_id) if self.cancels else None
        if cancel is not None and prior is None:
            return await self._cancelled_before(out, request, cancel)
        try:
            plan = plan_request(request, self.inventory, allow_targets=self.planning_overrides())
            plan, audit = self.admission.authorize(plan, audit, self.inventory, self.allow_targets)
        except SchemaError as exc:  # TargetError: unknown group, too many hosts, no hosts,
            # a target outside the inventory or with its own user or port (collector.confine)
            return await self._refuse(out, record, exc, request, audit=audit)
        except Refused as exc:  # the policy denied it
            return await self._refuse(out, record, exc, request, audit=exc.audit)
        request = plan.request  # a template request comes back rendered
        try:
            if lane is None:
                await self._run(request, plan, out, None, audit=audit)
            elif self.sharding is not None and self.sharding.applies(plan, prior):
                await self.sharding.run(record, request, plan, lane, content, prior)
            else:
                await self._run_ledgered(request, plan, lane, content, prior, audit)
        except (asyncio.CancelledError, CollectorError):
            raise  # shutdown / revocation, or Kafka refusing records: the offset stays open
        except Exception as exc:
            # A bug, not bad input; the record is kept in the DLQ with what went wrong rather
            # than retried forever by every collector of the group.
            log.exception("request failed inside the collector", extra=_ids(request))
            if lane is not None:
                lane.ledger.forget_running(request.request_id)
            return await self._refuse(out, record, exc, request)
        self.metrics.requests.labels("completed").inc()
        return "completed"

    def planning_overrides(self) -> Collection[Override]:
        """The target overrides requests are planned with (see Admission.planning_overrides)."""
        return self.admission.planning_overrides(self.allow_targets, self.inventory)

    def stop_all(self, reason: str) -> int:
        """Kill every running command, each reported as killed with `reason`; hosts not started
        yet are skipped unless the partition is being handed over. Returns how many requests."""
        for stop in self.stops.values():
            stop.set(reason)
        return len(self.stops)

    async def _cancelled_before(
        self, out: Publisher, request: Request, cancel: Cancel
    ) -> Disposition:
        """Its cancel came first: the request runs nowhere (not bad input: no dead letter)."""
        rejected = Status.rejected(
            request.request_id,
            cancel.message,
            collector=self.collector,
            request=request,
            cancel=cancel,
        )
        await out.publish(self.topics.status, request.request_id.encode(), schemas.encode(rejected))
        log.info("request cancelled before it ran", extra=_ids(request) | {"by": cancel.principal})
        self.metrics.requests.labels("rejected").inc()
        return "rejected"

    def _duplicate(self, lane: Lane, request: Request, record: ConsumedRecord) -> Disposition:
        self.metrics.requests.labels("duplicate").inc()
        if request.request_id not in lane.duplicates_logged:
            if len(lane.duplicates_logged) > 10_000:
                lane.duplicates_logged.clear()  # bounded; a rare second line is fine
            lane.duplicates_logged.add(request.request_id)
            log.info(
                "request already ran or is running: record ignored",
                extra=_ids(request) | {"offset": record.offset},
            )
        return "duplicate"

    async def run_shard(
        self,
        shard_id: str,
        request: Request,
        plan: Plan[H],
        lane: Lane,
        content: str,
        prior: Prior | None,
    ) -> None:
        """One shard of a sharded request (collector.shardrun): its hosts, with the shards'
        ledger keyed by `shard_id`; no status (the request's coordinator publishes those)."""
        await self._run_ledgered(request, plan, lane, content, prior, key=shard_id)

    async def _run_ledgered(
        self,
        request: Request,
        plan: Plan[H],
        lane: Lane,
        content: str,
        prior: Prior | None,
        audit: Audit | None = None,
        *,
        key: str | None = None,
    ) -> None:
        """`_run` with the ledger: resume what an earlier owner left, never run a host twice.

        Hosts the ledger has `done` are neither run nor published again (their statuses still
        count in `completed`); hosts `started` but not done get one `error` / outcome_unknown
        result, or run again as attempt + 1 when the request is idempotent; the rest run.
        """
        # A shard (`key` given) is its own entry in the shards' ledger and has no status of its
        # own: its `running` entry goes out before its first host's mark instead.
        rid = key or request.request_id
        lane.ledger.running_here.add(rid)
        entry = lane.ledger.begin(rid, content, _utcnow())
        if key is not None and entry is not None:
            await lane.outbox.write([lane.entry(entry)])
            entry = None
        split = split_resume(plan.hosts, prior, self.fanout.default_user, request.idempotent)
        if prior is not None:
            log.info(
                "resuming a request an earlier collector left unfinished",
                extra=_ids(request)
                | {
                    "done": len(split.done),
                    "outcome_unknown": len(split.unknown),
                    "to_run": len(split.todo),
                },
            )
        ledgered: LedgeredRun[H] = LedgeredRun(
            rid,
            lane,
            split.base,
            self.metrics.ledger_start_wait.observe,
            accepted_with=[lane.entry(entry)] if entry is not None else [],
            announce=prior is None and key is None,
            targets_total=plan.total,
            prior_statuses=split.done,
            before=[
                unknown_result(request, p, a, self.collector, self.fanout.default_user, _utcnow())
                for p, a in split.unknown
            ],
        )
        todo = split.todo
        await self._run(
            request,
            dataclasses.replace(plan, hosts=tuple(todo)) if len(todo) != plan.total else plan,
            lane.outbox,
            lane,
            ledgered,
            audit=audit,
            report=key is None,
        )

    async def _run(
        self,
        request: Request,
        plan: Plan[H],
        out: Publisher,
        lane: Lane | None,
        ledgered: LedgeredRun[H] | None = None,
        *,
        audit: Audit | None = None,
        report: bool = True,
    ) -> None:
        """Run the plan's hosts; `report` False (a shard): no accepted or completed status."""
        started = time.monotonic()
        rid = request.request_id
        run_key = ledgered.request_id if ledgered is not None else rid  # a shard's own id
        key = rid.encode()
        acks = _Acks()
        total = plan.total if ledgered is None else ledgered.targets_total
        if ledgered is None or ledgered.announce:
            accepted = Status.accepted(
                request, targets_total=total, collector=self.collector, audit=audit
            )
            value = schemas.encode(accepted)
            # Sent without waiting: the status partition keeps accepted before completed, and
            # the completed status is only sent once this acknowledgement (and every result's)
            # is in. With the ledger, the request's `running` entry goes in the same transaction.
            if lane is not None:
                records = [Out(self.topics.status, key, value)]
                if ledgered is not None:
                    records += ledgered.accepted_with
                acks.add(lane.outbox.write(records))
            else:
                acks.add(out.publish(self.topics.status, key, value))
            log.info(
                "request accepted",
                extra=_ids(request) | {"targets_total": total, "command": request.command},
            )

        async def publish_result(result: Result, value: bytes) -> None:
            if ledgered is not None:
                await ledgered.publish([Out(self.topics.results, key, value)], result)
            else:
                await out.publish(self.topics.results, key, value, request_id=rid, host=result.host)
            self.metrics.results.labels(result.status).inc()

        published: list[ResultStatus] = []

        async def on_result(result: Result) -> None:
            acks.check()  # Kafka refused a record for good: stop starting hosts
            if ledgered is not None:
                result = ledgered.renumber(result)
            result, value = self._encode_result(result)
            published.append(result.status)  # counted as published (a replacement may differ)
            acks.add(publish_result(result, value))
            _log_result(request, result)

        stop = Stop()
        self.stops[run_key] = stop
        watching = contextlib.ExitStack()
        watching.callback(self.stops.pop, run_key, None)
        with watching:
            if self.cancels is not None:
                watcher = watch_cancel(self.cancels, rid, stop, watching)
            try:
                for result in ledgered.before if ledgered is not None else ():
                    await on_result(result)
                handed_over = await self.fanout.run(
                    plan,
                    on_result,
                    on_start=ledgered.on_start if ledgered is not None else None,
                    reserve=ledgered.reserve if ledgered is not None else None,
                    keep_starting=_keep_starting(lane),
                    stop=stop,
                    budget_spent=_drained(self.cancels, rid),
                )
                await acks.wait()
            except BaseException:
                await acks.cancel()
                raise
            finally:
                if self.cancels is not None:
                    watcher.cancel()
        cancel = self.cancels.cancelled(rid) if self.cancels and stop.is_set() else None
        if cancel is not None and cancel.message != stop.reason:
            cancel = None  # stopped by the collector (shutdown), not by this cancel
        if handed_over:
            if lane is not None:
                lane.ledger.forget_running(run_key)
            if ledgered is not None:
                await ledgered.release()
            raise HandedOver(f"request {run_key}: hosts not started are left to the next owner")
        if not report and lane is not None:
            closing = [lane.entry(item) for item in lane.ledger.finish(run_key, _utcnow())]
            await lane.outbox.write(closing)
            log.info("shard done", extra={"shard": run_key, "hosts": len(published)})
            return
        duration_ms = int((time.monotonic() - started) * 1000)
        prior_statuses = ledgered.prior_statuses if ledgered is not None else []
        counts = StatusCounts.of([*published, *prior_statuses])  # type: ignore[list-item]
        completed = Status.completed(
            request.request_id,
            counts,
            duration_ms=duration_ms,
            collector=self.collector,
            cancel=cancel,
        )
        completed_value = schemas.encode(completed)
        if lane is not None:
            closing = [lane.entry(item) for item in lane.ledger.finish(rid, _utcnow())]
            await lane.outbox.write([Out(self.topics.status, key, completed_value), *closing])
        else:
            await out.publish(self.topics.status, key, completed_value)
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
        self,
        out: Publisher,
        record: ConsumedRecord,
        exc: Exception,
        request: Request | None,
        *,
        reused: Request | None = None,
        audit: Audit | None = None,
    ) -> Disposition:
        if reused is not None:
            request_id: str | None = reused.request_id
        else:
            request_id = request.request_id if request else schemas.peek_request_id(record.value)
        if isinstance(exc, Refused):
            self.metrics.refusals.labels(exc.why).inc()
        error = ErrorInfo.from_exception(exc)
        await self._dead_letter(out, record, error, request_id)
        extra = {"request_id": request_id or "", "offset": record.offset, "error": str(exc)}
        log.warning("request refused", extra=extra)
        if request_id is None:
            self.metrics.requests.labels("dead_lettered").inc()
            return "dead_lettered"
        # A reused id: the rejected status carries no request details, and says so, so that the
        # stored request of the first record keeps its own (the sink ignores such statuses).
        rejected = Status.rejected(
            request_id, str(exc), collector=self.collector, request=request, audit=audit
        )
        value = schemas.encode(rejected)
        await out.publish(self.topics.status, request_id.encode(), value)
        self.metrics.requests.labels("rejected").inc()
        return "rejected"

    async def _dead_letter(
        self, out: Publisher, record: ConsumedRecord, error: ErrorInfo, request_id: str | None
    ) -> None:
        await publish_dead_letter(
            out, self.topics.dlq, record, error, instance=self.collector, request_id=request_id
        )
        self.metrics.dead_letters.inc()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _drained(cancels: Cancels | None, request_id: str) -> Callable[[], bool] | None:
    if cancels is None:
        return None
    return lambda: cancels.drained(request_id) is not None


def _keep_starting(lane: Lane | None) -> Callable[[], bool] | None:
    if lane is None:
        return None
    return lambda: not lane.handing_over


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
