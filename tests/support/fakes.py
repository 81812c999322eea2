"""Fakes for unit tests, one per Protocol the services are built on.

The fakes of services subclass the Protocol they stand in for, so mypy checks that they keep
up with it; the data-like ones (hosts, inventory, records) match theirs structurally:
    FakeExecutor     collector.fanout.Executor   scripted statuses, holds, failures
    FakePublisher    collector.kafka.Publisher   records what is published, refuses on demand
    ScriptedStore    sink.store.ResultStore      raises scripted errors, then stores
    FakeDeadLetters  sink.dlq.DeadLetterSink     records dead letters, fails on demand
    FakeInventory    collector.fanout.Resolver   groups, and target → FakeHost (HostLike)
    FakeRecord       schemas.ConsumedRecord      a consumed Kafka record
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import schemas
from collector.admission import Admission
from collector.cancels import Cancels
from collector.confine import InventoryListing, Override
from collector.errors import RecordTooLarge
from collector.fanout import Executor, OnStart
from collector.handler import RequestHandler
from collector.kafka import Publisher, Topics
from collector.metrics import CollectorMetrics
from collector.stop import Stop
from schemas import DeadLetter, ErrorInfo, Request, Result, ResultStatus, Target
from sink.dlq import DeadLetterSink
from sink.store import ResultStore, WriteBatch, WriteOutcome
from tests.support.records import T0, make_result


@dataclass(frozen=True, slots=True)
class FakeRecord:
    """A consumed Kafka record."""

    value: bytes | None
    key: bytes | None = b"key"
    topic: str = "t.requests"
    partition: int = 0
    offset: int = 0
    timestamp: int = 1_714_564_800_000  # T0 in milliseconds


# --- collector ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FakeHost:
    """A resolved host (collector.fanout.HostLike)."""

    name: str
    port: int = 22
    user: str = "deploy"
    address: str = ""  # "" = the name itself, as the inventory does without an `address`
    jump: FakeHost | None = None

    def __post_init__(self) -> None:
        if not self.address:
            object.__setattr__(self, "address", self.name)


@dataclass
class FakeInventory:
    """Groups @web (web1-4) and @bad (broken1); hosts named broken* do not resolve."""

    groups: Mapping[str, Sequence[str]] = field(
        default_factory=lambda: {"web": ["web[1-4]"], "bad": ["broken1"]}
    )

    @property
    def listing(self) -> InventoryListing:
        """Lists the group members only, as the real inventory does for a groups-only file."""
        return InventoryListing((), self.groups, self.resolve)

    def resolve(self, target: Target) -> FakeHost:
        if target.name.startswith("broken"):
            raise LookupError(f"{target.name}: no address in the inventory")
        return FakeHost(target.name, target.port or 22, target.user or "deploy")


@dataclass
class FakeExecutor(Executor[FakeHost]):
    """Returns scripted statuses; optional per-host gates let a test hold a host mid-run."""

    statuses: Mapping[str, ResultStatus] = field(default_factory=dict)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    raise_for: set[str] = field(default_factory=set)
    started: list[str] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_started(self, n: int) -> None:
        """Until `n` hosts have started (the caller puts a deadline around it)."""
        async with self.changed:
            await self.changed.wait_for(lambda: len(self.started) >= n)

    async def run(
        self,
        host: FakeHost,
        request: Request,
        *,
        collector: str,
        on_start: OnStart[FakeHost] | None = None,
        stop: Stop | None = None,
    ) -> Result:
        if stop is not None and stop.reason is not None:
            return self._stopped(host, request, collector, stop.reason)
        if on_start is not None:
            await on_start(host, 1)
        async with self.changed:
            self.started.append(host.name)
            self.changed.notify_all()
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if host.name in self.hold:
                if stop is None:
                    await self.hold[host.name].wait()
                else:  # a held host is "running": a stop kills it, as the SSH executor does
                    event = asyncio.Event()
                    stop.attach(event)
                    waiters = [asyncio.create_task(e.wait()) for e in (self.hold[host.name], event)]
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    for waiter in waiters:
                        waiter.cancel()
                    stop.detach(event)
                    if stop.reason is not None:
                        return self._stopped(host, request, collector, stop.reason, killed=True)
            await asyncio.sleep(0)
            if host.name in self.raise_for:
                raise RuntimeError("executor bug")
            return self.result(host, request, collector)
        finally:
            self.running -= 1

    def _stopped(
        self, host: FakeHost, request: Request, collector: str, reason: str, *, killed: bool = False
    ) -> Result:
        """What the SSH executor gives a stopped host: killed when running, else skipped."""
        kind, words = ("killed", "killed") if killed else ("not_started", "not started")
        return make_result(
            request.request_id,
            host.name,
            status="error" if killed else "skipped",
            port=host.port,
            user=host.user,
            finished_at=T0,
            collector=collector,
            error=ErrorInfo.bounded(kind, f"{words}: {reason}"),
        )

    def result(self, host: FakeHost, request: Request, collector: str) -> Result:
        """The scripted result of `host` (a subclass may alter it)."""
        return make_result(
            request.request_id,
            host.name,
            status=self.statuses.get(host.name, "ok"),
            port=host.port,
            user=host.user,
            finished_at=T0,
            collector=collector,
        )


@dataclass
class FakePublisher(Publisher):
    """Records (topic, key, decoded value) of what would be published; can refuse records on
    chosen topics (a RecordTooLarge only for values over 2,000 bytes) and hold acknowledgements
    on one topic until `gate` is set."""

    sent: list[tuple[str, bytes | None, schemas.Message]] = field(default_factory=list)
    refuse: Mapping[str, Exception] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    gated_topic: str = ""

    async def publish(self, topic: str, key: bytes | None, value: bytes, **log_extra: Any) -> None:
        if topic in self.refuse:
            exc = self.refuse[topic]
            if not isinstance(exc, RecordTooLarge) or len(value) > 2_000:
                raise exc
        if self.gate is not None and topic == self.gated_topic:
            await self.gate.wait()
        self.sent.append((topic, key, schemas.decode(value)))

    def results(self, topic: str) -> list[Result]:
        return [v for t, _, v in self.sent if t == topic and isinstance(v, Result)]

    def statuses(self, topic: str) -> list[schemas.Status]:
        return [v for t, _, v in self.sent if t == topic and isinstance(v, schemas.Status)]

    def dead_letters(self, topic: str) -> list[DeadLetter]:
        return [v for t, _, v in self.sent if t == topic and isinstance(v, DeadLetter)]


# --- sink -------------------------------------------------------------------------------------


class ScriptedStore(ResultStore):
    """Raises the scripted errors in turn, then stores (every batch's dead letters, no rows)."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.batches: list[WriteBatch] = []
        self.on_write: Callable[[WriteBatch], None] | None = None  # called first, every time

    async def write(self, batch: WriteBatch) -> WriteOutcome:
        if self.on_write is not None:
            self.on_write(batch)
        self.calls += 1
        self.batches.append(batch)
        if self.errors:
            raise self.errors.pop(0)
        return WriteOutcome(results_inserted=0, dead=list(batch.dead))


class FakeDeadLetters(DeadLetterSink):
    """Keeps what is published; raises the scripted errors first."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.published: list[DeadLetter] = []

    async def publish(self, dead: list[DeadLetter]) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.published.extend(dead)


def fake_handler(
    publisher: Publisher,
    executor: FakeExecutor | None = None,
    *,
    topics: Topics | None = None,
    metrics: CollectorMetrics | None = None,
    cancels: Cancels | None = None,
    admission: Admission | None = None,
    allow_targets: Collection[Override] = (),
) -> RequestHandler[FakeHost]:
    """A RequestHandler on the fakes (inventory @web/@bad, user `deploy`, collector `c1`)."""
    return RequestHandler(
        collector="c1",
        topics=topics or Topics.from_prefix("t."),
        publisher=publisher,
        executor=executor or FakeExecutor(),
        inventory=FakeInventory(),
        metrics=metrics or CollectorMetrics(),
        max_message_bytes=1_000_000,
        default_user="deploy",
        cancels=cancels,
        admission=admission,
        allow_targets=allow_targets,
    )
