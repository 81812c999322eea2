"""Cancels: every collector reads every fleetrun.cancel/1 record and keeps the recent ones.

Whichever collector runs a request must stop it within a second of its cancel, and a request
that arrives after its cancel must be rejected, so each collector reads the whole cancels topic
itself: a plain consumer without a group (every partition assigned, read_committed). On start it
reads back `cancel_lookback_s` (offsets_for_times) to the end before the collector takes a
request, then follows. A `CancelRegistry` (collector.cancelled) keeps what it read, bounded by
age (the same lookback, from each record's Kafka timestamp) and count; a request handler asks
`cancelled(request_id)` before it starts and `watch(request_id)` while it runs (an
asyncio.Event, set when the cancel comes). A cancel record that cannot be decoded goes to the
dead-letter topic (collector.deadletters) and never stops the watcher; each collector
dead-letters what it reads, so one bad record may be dead-lettered by several of them (the same
source topic, partition and offset, which the sink's dead_letters table keeps once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

import schemas
from collector.cancelled import CancelRegistry
from collector.deadletters import publish_dead_letter
from collector.errors import CollectorError, classify
from collector.kafka import Publisher, Topics
from collector.metrics import CollectorMetrics
from collector.settings import CollectorSettings
from collector.stop import Stop
from fleetrun.runtime.backoff import backoff_delay
from fleetrun.runtime.kafkaauth import client_options
from schemas import Cancel, ConsumedRecord, ErrorInfo, SchemaError

_TOPIC_APPEAR_S: Final = 5.0
log = logging.getLogger("fleetrun.collector.cancels")

_START_TIMEOUT_S: Final = 120.0  # connect and read back the lookback
_METADATA_POLL_S: Final = 0.05
_POLL_MS: Final = 200  # with fetch_max_wait_ms=100: a cancel is seen well within a second
_MAX_RECORDS: Final = 500
_EXPIRE_EVERY_S: Final = 5.0
_PARTITIONS_EVERY_S: Final = 60.0  # notice partitions added to the cancels topic
_HEALTHY_POLL_AGE_S: Final = 30.0
_MAX_PENDING_DEAD_LETTERS: Final = 1_000
_DLQ_DRAIN_S: Final = 5.0
_CLOSE_TIMEOUT_S: Final = 15.0


class CancelConsumer(Protocol):
    """What the watcher uses of aiokafka's AIOKafkaConsumer (a fake in unit tests)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def topics(self) -> set[str]: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> None: ...
    async def position(self, partition: TopicPartition) -> int: ...
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, Any]: ...  # OffsetAndTimestamp (.offset) or None
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...


def make_cancel_consumer(settings: CollectorSettings) -> AIOKafkaConsumer:
    """The cancels consumer: no group, no commits, committed records only."""
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        client_id=f"fleetrun-collector-{settings.name}-cancels",
        enable_auto_commit=False,
        isolation_level="read_committed",
        # Positions are set explicitly; one lost to retention restarts at the oldest record
        # rather than skipping cancels.
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        metadata_max_age_ms=60_000,
    )


class CancelWatcher:
    """Reads the cancels topic into a CancelRegistry: the lookback at start, then follows."""

    def __init__(
        self,
        consumer: CancelConsumer,
        *,
        topic: str,
        dlq_topic: str,
        publisher: Publisher,
        collector: str,
        lookback_s: float,
        max_entries: int,
        metrics: CollectorMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.publisher = publisher
        self.collector = collector
        self.lookback_s = lookback_s
        self.metrics = metrics
        self.registry = CancelRegistry(ttl_s=lookback_s, max_entries=max_entries, clock=clock)
        self._clock = clock
        self._partitions: list[TopicPartition] = []
        self._dead: asyncio.Queue[tuple[ConsumedRecord, ErrorInfo]] = asyncio.Queue(
            _MAX_PENDING_DEAD_LETTERS
        )
        self._follower: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._replaying = True
        self._last_poll = 0.0
        self._last_expiry = 0.0
        self._last_partitions = 0.0

    @classmethod
    def from_settings(
        cls,
        settings: CollectorSettings,
        topics: Topics,
        publisher: Publisher,
        metrics: CollectorMetrics | None = None,
    ) -> CancelWatcher:
        """The watcher a collector runs, on its own consumer."""
        return cls(
            make_cancel_consumer(settings),
            topic=topics.cancels,
            dlq_topic=topics.dlq,
            publisher=publisher,
            collector=settings.name,
            lookback_s=settings.cancel_lookback_s,
            max_entries=settings.cancel_max_entries,
            metrics=metrics,
        )

    # --- what request handlers use -----------------------------------------------------------

    def cancelled(self, request_id: str) -> Cancel | None:
        """The cancel of `request_id` when one was read (within the lookback), else None."""
        return self.registry.cancelled(request_id)

    def drained(self, request_id: str) -> Cancel | None:
        """The drain of `request_id` (Cancel.drain: skip hosts not started), else None."""
        return self.registry.drained(request_id)

    def watch(self, request_id: str) -> asyncio.Event:
        """An Event set when `request_id` is cancelled; `unwatch` it when the request is done."""
        return self.registry.watch(request_id)

    def unwatch(self, request_id: str) -> None:
        """The request is done here: drop its Event."""
        self.registry.unwatch(request_id)

    def watching(self, request_id: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        """`watch` for the duration of a `with` block."""
        return self.registry.watching(request_id)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Connect, read the last `lookback_s` of cancels to the end, then follow in the
        background. Raises CollectorError when Kafka or the topic is not there."""
        self._sender = asyncio.create_task(self._send_dead_letters(), name="cancel dead letters")
        try:
            async with asyncio.timeout(timeout_s):
                await self.consumer.start()
                if not await self._topic_exists():
                    raise CollectorError(
                        f"the cancels topic {self.topic} does not exist: create it "
                        f"(kafka-topics.sh --create --topic {self.topic} --partitions 3), then "
                        "start again",
                        retriable=False,
                    )
                await self._replay()
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, KafkaError | TimeoutError | OSError):
                raise classify(exc, f"reading the cancels topic {self.topic}") from exc
            raise
        self._replaying = False
        self._last_poll = time.monotonic()
        self._follower = asyncio.create_task(self._follow(), name="cancel watcher")

    async def _topic_exists(self) -> bool:
        """Whether the broker knows the topic; a topic created a moment ago may take a few
        metadata rounds to appear, so absence is only believed after _TOPIC_APPEAR_S."""
        deadline = time.monotonic() + _TOPIC_APPEAR_S
        while self.topic not in await self.consumer.topics():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def stop(self) -> None:
        """Stop following, give pending dead letters a moment, close the consumer."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._sender is not None:
            try:
                async with asyncio.timeout(_DLQ_DRAIN_S):
                    await self._dead.join()
            except TimeoutError:
                log.warning(
                    "cancel dead letters not sent before stopping (the records stay in the "
                    "cancels topic)",
                    extra={"pending": self._dead.qsize()},
                )
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        self._follower = self._sender = None
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self.consumer.stop()
        except Exception as exc:
            log.warning("cancels consumer did not close cleanly", extra={"error": repr(exc)})

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the follower runs and polls."""
        follower = self._follower
        running = follower is not None and not follower.done()
        age = time.monotonic() - self._last_poll
        ok = running and age < _HEALTHY_POLL_AGE_S
        return ok, {
            "cancel_watcher_running": running,
            "cancels_known": len(self.registry),
            "cancels_watched": self.registry.watched,
        }

    # --- reading -----------------------------------------------------------------------------

    async def _replay(self) -> None:
        # A consumer without a subscription knows no topic's partitions; assigning partition 0
        # (which every topic has) makes it fetch and keep refreshing the topic's metadata.
        self.consumer.assign([TopicPartition(self.topic, 0)])
        known = self.consumer.partitions_for_topic
        while not (partitions := known(self.topic)):  # noqa: ASYNC110 - no event for metadata
            await asyncio.sleep(_METADATA_POLL_S)
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(self._partitions)
        since_ms = int((self._clock() - self.lookback_s) * 1000)
        ends = await self.consumer.end_offsets(self._partitions)
        found = await self.consumer.offsets_for_times(dict.fromkeys(self._partitions, since_ms))
        for tp in self._partitions:
            hit = found.get(tp)
            self.consumer.seek(tp, ends[tp] if hit is None else hit.offset)
        remaining = {tp for tp in self._partitions if await self.consumer.position(tp) < ends[tp]}
        while remaining:
            batch = await self.consumer.getmany(*remaining, timeout_ms=_POLL_MS)
            self._take(batch)
            for tp in list(remaining):
                if await self.consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        self._last_partitions = time.monotonic()
        log.info(
            "cancels read back",
            extra={
                "topic": self.topic,
                "lookback_s": self.lookback_s,
                "cancels": len(self.registry),
            },
        )

    async def _follow(self) -> None:
        failures = 0
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
                self._last_poll = time.monotonic()
                self._take(batch)
                await self._housekeeping()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Kafka away, or a bug: either way the watcher keeps going (the records stay
                # in the topic, and the consumer resumes from its positions).
                failures += 1
                log.warning(
                    "reading cancels failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "failures": failures},
                    exc_info=exc if not isinstance(exc, KafkaError) else None,
                )
                await asyncio.sleep(backoff_delay(failures, 0.2, 5.0, random.random()))

    def _take(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for records in batch.values():
            for record in records:
                self._take_one(record)

    def _take_one(self, record: ConsumedRecord) -> None:
        try:
            cancel = schemas.decode_cancel(record.value)
        except SchemaError as exc:
            self._refuse(record, ErrorInfo.from_exception(exc))
            return
        except Exception as exc:  # a bug, not bad input: kept in the DLQ with what went wrong
            log.exception("cancel record not readable", extra={"offset": record.offset})
            self._refuse(record, ErrorInfo.from_exception(exc))
            return
        written_at = record.timestamp / 1000 if record.timestamp >= 0 else None
        if not self.registry.add(cancel, written_at=written_at):
            return
        rid = cancel.request_id
        log.log(
            logging.DEBUG if self._replaying else logging.INFO,
            "cancel received",
            extra={
                "request_id": rid,
                "cancelled_by": cancel.principal,
                "reason": cancel.reason or "",
                "running_here": self.registry.is_watched(rid),
            },
        )

    def _refuse(self, record: ConsumedRecord, error: ErrorInfo) -> None:
        where = {"partition": record.partition, "offset": record.offset, "error": error.message}
        try:
            self._dead.put_nowait((record, error))
        except asyncio.QueueFull:
            # The dead-letter topic has been refusing for a while; reading cancels matters
            # more than waiting for it. Said loudly; the record stays in the cancels topic.
            log.error("cancel record refused and NOT dead-lettered (backlog full)", extra=where)
            return
        log.warning("cancel record refused: dead-lettered", extra=where)

    async def _send_dead_letters(self) -> None:
        while True:
            record, error = await self._dead.get()
            try:
                await publish_dead_letter(
                    self.publisher,
                    self.dlq_topic,
                    record,
                    error,
                    instance=self.collector,
                    request_id=schemas.peek_request_id(record.value),
                )
                if self.metrics is not None:
                    self.metrics.dead_letters.inc()
            except Exception as exc:
                log.error(
                    "cancel record not dead-lettered",
                    extra={"partition": record.partition, "offset": record.offset}
                    | {"error": str(exc)},
                )
            finally:
                self._dead.task_done()

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_expiry >= _EXPIRE_EVERY_S:
            self._last_expiry = now
            self.registry.expire()
        if now - self._last_partitions >= _PARTITIONS_EVERY_S:
            self._last_partitions = now
            await self._add_new_partitions()

    async def _add_new_partitions(self) -> None:
        """Partitions added to the topic since the start: assign them from their beginning.
        (The consumer refreshes the metadata of the topics it is assigned every minute.)"""
        known = {tp.partition for tp in self._partitions}
        new = sorted(set(self.consumer.partitions_for_topic(self.topic) or ()) - known)
        if not new:
            return
        positions = {tp: await self.consumer.position(tp) for tp in self._partitions}
        added = [TopicPartition(self.topic, p) for p in new]
        self._partitions = [*self._partitions, *added]
        self.consumer.assign(self._partitions)
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)
        await self.consumer.seek_to_beginning(*added)
        log.info("cancels partitions added", extra={"partitions": ",".join(map(str, new))})


class Cancels(Protocol):
    """What the handler needs of the cancel watcher (collector.cancels.CancelWatcher)."""

    def cancelled(self, request_id: str) -> Cancel | None: ...
    def drained(self, request_id: str) -> Cancel | None: ...
    def watching(self, request_id: str) -> contextlib.AbstractContextManager[asyncio.Event]: ...


def watch_cancel(
    cancels: Cancels, request_id: str, stop: Stop, stack: contextlib.ExitStack
) -> asyncio.Task[None]:
    """Set `stop` when the request is cancelled (at once if it already is)."""
    event = stack.enter_context(cancels.watching(request_id))

    async def wait() -> None:
        await event.wait()
        cancel = cancels.cancelled(request_id)
        stop.set(cancel.message if cancel is not None else "request cancelled")
        log.info("request cancelled", extra={"request_id": request_id})

    existing = cancels.cancelled(request_id)
    if existing is not None:
        stop.set(existing.message)
    return asyncio.create_task(wait(), name=f"cancel watch {request_id}")
