"""The collector service loop: getmany → fan out → publish → commit, and its shutdown sequence.

Each request record becomes one task (RequestHandler.handle). The loop caps requests in flight
by pausing every partition (it keeps polling, so the group membership stays alive), commits the
highest contiguous finished offset per partition (OffsetTracker), and on SIGTERM stops fetching,
lets in-flight work finish within the grace period, commits, and closes everything in order.

With the execution ledger (the default, collector.ledger), each owned requests partition has a
lane: a transactional outbox and the partition's ledger, read to its end before the partition's
first request is taken (collector.lanes). Rebalance and shutdown rule: no new host starts on a
partition being handed over; running hosts get `rebalance_drain_s` (revocation) or the shutdown
grace to finish and publish; then what still runs is cancelled (the executor kills the remote
command). A request not finished stays uncommitted and its next owner resumes it from the ledger:
hosts done are not run again, hosts started and not done get `outcome_unknown`, hosts never
started run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Generic

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from collector.admission import Admission
from collector.cancels import CancelWatcher
from collector.errors import CollectorError, classify
from collector.fanout import Executor, H, Resolver
from collector.handler import Disposition, RequestHandler
from collector.kafka import KafkaPublisher, Topics, make_consumer, make_producer
from collector.lanesets import LaneSet
from collector.live import LiveOutputs, StreamsOutput
from collector.metrics import CollectorMetrics
from collector.offsets import OffsetTracker
from collector.outbox import Fenced, HandedOver
from collector.partitions import Partitions, format_offsets
from collector.settings import CollectorSettings
from collector.sharded import ShardCoordinator
from collector.shardrun import ShardRunner
from schemas import ConsumedRecord

log = logging.getLogger("fleetrun.collector")

_POLL_MS: Final = 200  # how long one getmany waits for records when partitions are fetching
_IDLE_WAKE_S: Final = 1.0  # while paused: poll at least this often to stay in the group
_PAUSE_AFTER_S: Final = 1.0  # full for this long: pause the partitions (see _consume)
_HOUSEKEEPING_S: Final = 2.0  # lag and pool gauges
_TOPICS_TIMEOUT_S: Final = 15.0
_CANCEL_TIMEOUT_S: Final = 15.0  # cancelled hosts: time for the executor to kill remote commands
_CLOSE_TIMEOUT_S: Final = 15.0


@dataclass(slots=True)
class Summary:
    """What one run of the collector did, for the one summary line at exit."""

    outcomes: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0  # requests in flight when the grace period ran out (redelivered later)
    revoked: int = 0  # requests cancelled by a rebalance (redelivered to the new owner)
    handed_over: int = 0  # requests stopped with hosts not started (the next owner runs them)
    fatal: str | None = None

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())


@dataclass(frozen=True, slots=True)
class _InFlight:
    tp: TopicPartition
    offset: int


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drains or hands back in-flight work of revoked partitions (see the module docstring)."""

    def __init__(self, service: Collector[Any]) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": _names(assigned)})
        await self.service.on_assigned(assigned)


class Collector(Generic[H]):
    """One collector: consumes requests, runs them through the executor, publishes, commits."""

    def __init__(
        self,
        settings: CollectorSettings,
        *,
        executor: Executor[H],
        inventory: Resolver[H],
        metrics: CollectorMetrics,
        close_executor: bool = True,
        admission: Admission | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self.topics = Topics.from_prefix(settings.topic_prefix)
        self.name = settings.name
        self.consumer: AIOKafkaConsumer = make_consumer(settings)
        self.producer: AIOKafkaProducer = make_producer(settings)
        self.publisher = KafkaPublisher(self.producer, settings.publish_timeout_s)
        self.cancels = CancelWatcher.from_settings(settings, self.topics, self.publisher, metrics)
        # Live output goes through the plain producer, beside the ledger, never through it.
        self.live = LiveOutputs(
            self.producer,
            self.topics.output,
            budget_bytes=settings.live_output_budget_bytes,
            flush_every_s=settings.live_output_flush_s,
            queue_bytes=settings.live_output_queue_bytes,
            send_timeout_s=settings.publish_timeout_s,
        )
        if settings.live_output and isinstance(executor, StreamsOutput):
            executor.live = self.live
        self.handler: RequestHandler[H] = RequestHandler(
            collector=self.name,
            topics=self.topics,
            publisher=self.publisher,
            executor=executor,
            inventory=inventory,
            metrics=metrics,
            max_message_bytes=settings.max_message_bytes,
            default_user=settings.ssh_user,
            cancels=self.cancels,
            allow_targets=settings.allow_targets,
            admission=admission or Admission.from_settings(settings, inventory.groups),
        )
        # With the ledger, shards of big requests too (collector.sharded, collector.shardrun).
        self.lanes: LaneSet | None = (
            LaneSet(settings, self.topics, self.name, metrics.ledger_transactions.observe)
            if settings.ledger
            else None
        )
        self.shard_runner: ShardRunner[H] = ShardRunner(self.handler, self.topics, metrics)
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.partitions = Partitions(self.consumer, self.tracker, metrics)
        self.summary = Summary()
        self._close_executor = close_executor
        self._tasks: dict[asyncio.Task[Disposition], _InFlight] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._running = False
        self._hurry = False
        self._last_poll = 0.0
        self._last_housekeeping = 0.0

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the collector to stop (signal handlers call this); a second call skips the grace."""
        if self.lanes is not None:
            self.lanes.hand_over()  # no new host starts; running ones get the grace period
        if not self._stop.is_set():
            log.info("stop requested", extra={"inflight_requests": len(self._tasks)})
        elif not self._hurry:
            # A second SIGTERM/Ctrl-C: the operator does not want to wait for the grace period.
            log.warning("second stop request: cancelling in-flight requests now")
            self._hurry = True
        self._stop.set()
        self._wake.set()

    @property
    def _kill_wait_s(self) -> float:
        """How long killing running commands may take (TERM, KILL, close) plus publishing."""
        return 3 * self.settings.ssh_kill_grace_s + 5.0

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> Summary:
        """Consume until stopped, then shut down in order; returns what was done."""
        try:
            await self._start()
        except BaseException:
            await self.cancels.stop()
            await self.live.stop()
            await self._close_clients()
            raise
        try:
            await self._consume()
            await self._drain(self.settings.shutdown_grace_s)
        finally:
            await self._shutdown()
        return self.summary

    async def _start(self) -> None:
        deadline = max(30.0, self.settings.publish_timeout_s)
        try:
            async with asyncio.timeout(deadline):
                await self.producer.start()
                await self.consumer.start()
        except (KafkaError, TimeoutError, OSError) as exc:
            raise classify(exc, f"connecting to Kafka at {self.settings.kafka_bootstrap}") from exc
        await self._wait_for_topic(self.topics.requests)
        self.live.start()
        topics = [self.topics.requests]
        if self.lanes is not None:
            for topic in (self.topics.ledger, self.topics.shards, self.topics.shard_ledger):
                await self._wait_for_topic(topic)
            await self.lanes.check_partitions(self.producer)
            topics.append(self.topics.shards)
            await self._start_sharding()
        # Cancels first: a request whose cancel came before it must find it (lookback read).
        await self._wait_for_topic(self.topics.cancels)
        await self.cancels.start()
        self.consumer.subscribe(topics, listener=_Listener(self))
        self._running = True
        log.info(
            "collector started",
            extra={
                "collector": self.name,
                "topic": self.topics.requests,
                "group": self.settings.group_id,
                "max_inflight_requests": self.settings.max_inflight_requests,
            },
        )

    async def _start_sharding(self) -> None:
        """Big requests are split here (shard_size > 0); shards of any run here regardless."""
        if self.settings.shard_size <= 0:
            return
        try:
            async with asyncio.timeout(_TOPICS_TIMEOUT_S):
                partitions = sorted(await self.producer.partitions_for(self.topics.shards))
                results = sorted(await self.producer.partitions_for(self.topics.results))
        except (KafkaError, TimeoutError) as exc:
            raise classify(exc, f"reading the partitions of {self.topics.shards}") from exc
        self.handler.sharding = ShardCoordinator(
            self.settings,
            self.topics,
            publisher=self.publisher,
            metrics=self.metrics,
            default_user=self.handler.fanout.default_user,
            cancelled=self.cancels.cancelled,
            shard_partitions=partitions,
            result_partitions=results,
        )

    async def _wait_for_topic(self, topic: str) -> None:
        """Subscribe only once the broker knows the topic.

        A group that joins before the topic is in its leader's metadata gets no partitions
        until the next metadata refresh (minutes); a collector started with (or just before)
        its topics would sit idle. The broker never auto-creates topics, so wait, visibly.
        """
        waited = 0.0
        while not self.stopping:
            try:
                async with asyncio.timeout(_TOPICS_TIMEOUT_S):
                    if topic in await self.consumer.topics():
                        return
            except (KafkaError, TimeoutError) as exc:
                log.warning("listing topics failed", extra={"error": repr(exc)})
            if waited % 10 == 0:
                log.warning("requests topic not found; waiting for it", extra={"topic": topic})
            await self._wait_wake(0.5)
            waited += 0.5

    # --- the loop ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        while not self.stopping:
            # Coordinators of sharded requests only wait for their shards: they hold no session
            # and must not starve the shards (which may need this very collector) of room.
            # Those coordinators are bounded too (each reads the results back): at most as many
            # as requests in flight.
            waiting = self.handler.sharding.waiting if self.handler.sharding else 0
            cap = self.settings.max_inflight_requests
            room = min(cap - len(self._tasks) + waiting, 2 * cap - len(self._tasks))
            if room <= 0:
                # Full. Pausing makes aiokafka drop the records it has prefetched and fetch
                # them again after resume, so a short wait comes first: requests that finish
                # within it leave the buffer intact. Full for longer (long commands): pause
                # every partition and keep polling, which returns nothing but keeps this member
                # in the group (max.poll.interval).
                if not self.consumer.paused() and await self._wait_wake(_PAUSE_AFTER_S):
                    continue
                self.partitions.set_paused(True)
                await self._poll(0, 1)
                await self._wait_wake(_IDLE_WAKE_S)
            else:
                self.partitions.set_paused(False)
                batch = await self._poll(_POLL_MS, room)
                for tp, records in batch.items():
                    for record in records:
                        if not self._begin(tp, record):
                            break
            if self.partitions.commit_due():
                await self.partitions.commit()
            await self._housekeeping()

    async def _poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        try:
            batch: dict[TopicPartition, list[Any]] = await self.consumer.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
        except KafkaError as exc:
            # Coordinator errors surface here; aiokafka recovers by itself, so keep polling.
            log.warning("poll failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            await self._wait_wake(_IDLE_WAKE_S)
            batch = {}
        self._last_poll = time.monotonic()
        return batch

    def _begin(self, tp: TopicPartition, record: ConsumedRecord) -> bool:
        lane = None
        if self.lanes is not None:
            lane = self.lanes.get(tp)
            if lane is None or lane.handing_over:
                # Fetched before its ledger was read (or while handing over): not taken. Seek
                # back, so the record is fetched again once the lane is ready (or by the next
                # owner), and take nothing more from this partition in this batch.
                with contextlib.suppress(IllegalStateError):
                    self.consumer.seek(tp, record.offset)
                return False
        if not self.tracker.start(tp, record.offset):
            return True  # already handled in this assignment (a re-fetch after a seek)
        if lane is not None and tp.topic == self.topics.shards:
            work = self.shard_runner.handle(record, lane)
        else:
            work = self.handler.handle(record, lane)
        task = asyncio.create_task(work, name=f"{tp.topic} {tp.partition}@{record.offset}")
        self._tasks[task] = _InFlight(tp, record.offset)
        task.add_done_callback(self._finished)
        self.metrics.inflight_requests.set(len(self._tasks))
        return True

    def _finished(self, task: asyncio.Task[Disposition]) -> None:
        item = self._tasks.pop(task, None)
        self.metrics.inflight_requests.set(len(self._tasks))
        self._wake.set()
        if item is None or task.cancelled():
            return  # revoked or abandoned: left uncommitted for redelivery
        exc = task.exception()
        if exc is None:
            self.summary.outcomes[task.result()] += 1
            self.tracker.finish(item.tp, item.offset)
            return
        if isinstance(exc, HandedOver | Fenced):
            # Left uncommitted on purpose: the partition's next owner resumes it.
            self.summary.handed_over += 1
            log.info(
                "request handed over unfinished",
                extra={"partition": item.tp.partition, "offset": item.offset, "why": str(exc)},
            )
            return
        # Kafka refused our records for good (not retriable): stop rather than go on losing
        # output; the request stays uncommitted and another collector gets it.
        self.summary.fatal = str(exc)
        log.error(
            "request could not be published; stopping",
            extra={"partition": item.tp.partition, "offset": item.offset, "error": str(exc)},
            exc_info=exc if not isinstance(exc, CollectorError) else None,
        )
        self.stop()

    async def _wait_wake(self, timeout_s: float) -> bool:
        """Wait until a request finishes (or stop); False when `timeout_s` passed first."""
        woke = True
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            woke = False
        self._wake.clear()
        return woke

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping < _HOUSEKEEPING_S:
            return
        self._last_housekeeping = now
        await self.partitions.update_lag()  # open_connections is kept current by the pool
        if self.lanes is not None:
            await self.lanes.expire()

    # --- rebalance ---------------------------------------------------------------------------

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Lanes for new partitions; their requests wait until the ledger has been read."""
        if self.lanes is None:
            return
        try:
            await self.lanes.open(assigned)
        except CollectorError as exc:
            # Without its ledger a partition must not run anything: stop, and let the group
            # give the partitions to a collector that can read it.
            self.summary.fatal = str(exc)
            log.error("ledger could not be read; stopping", extra={"error": str(exc)})
            self.stop()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Give revoked partitions' requests rebalance_drain_s, commit, hand back the rest."""
        if self.lanes is not None:
            self.lanes.hand_over(revoked)
        mine = [t for t, item in self._tasks.items() if item.tp in revoked]
        if mine:
            log.info(
                "partitions revoked: draining in-flight requests",
                extra={"partitions": _names(revoked), "inflight_requests": len(mine)},
            )
            done, pending = await asyncio.wait(mine, timeout=self.settings.rebalance_drain_s)
            if pending:
                # Past the drain: kill what still runs and report it (killed), then hand over.
                self.handler.stop_all("partition revoked while the command ran")
                more, pending = await asyncio.wait(pending, timeout=self._kill_wait_s)
                done |= more
            for task in done:
                self._finished(task)  # now, not in a later callback: their offsets commit below
            if pending:
                self.summary.revoked += len(pending)
                await _cancel(pending)
        await self.partitions.commit(only=revoked)
        if self.lanes is not None:
            await self.lanes.close(revoked)
        abandoned = self.tracker.revoke(revoked)
        for tp in revoked:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(str(tp.partition))
        if abandoned:
            log.warning(
                "requests handed back to the group unfinished (they will run again)",
                extra={"offsets": format_offsets({tp: o[0] for tp, o in abandoned.items()})},
            )

    # --- shutdown ----------------------------------------------------------------------------

    async def _drain(self, grace_s: float) -> None:
        """Stop fetching; keep polling (paused) while in-flight requests finish, up to grace_s."""
        if self._tasks:
            log.info(
                "draining in-flight requests",
                extra={"inflight_requests": len(self._tasks), "grace_s": grace_s},
            )
        deadline = time.monotonic() + grace_s
        while self._tasks and time.monotonic() < deadline and not self._hurry:
            self.partitions.set_paused(True)
            await self._poll(0, 1)
            await self._wait_wake(min(_IDLE_WAKE_S, max(0.0, deadline - time.monotonic())))
            await self.partitions.commit()

    async def _shutdown(self) -> None:
        if self._tasks and self.handler.stop_all("collector shutting down past its grace period"):
            # Running commands are killed on the hosts and reported as such; hosts not started
            # are left to the next owner (the lanes are handing over).
            await asyncio.wait(set(self._tasks), timeout=self._kill_wait_s)
        if self._tasks:
            pending = set(self._tasks)
            self.summary.abandoned += len(pending)
            log.warning(
                "grace period over: cancelling unfinished requests (they will be redelivered)",
                extra={"inflight_requests": len(pending)},
            )
            await _cancel(pending)
        if self._running:
            await self.partitions.commit()
        if self.lanes is not None:
            await self.lanes.close()
        await self.cancels.stop()  # before the producer: its dead letters use it
        await self.live.stop()
        await self._close_clients()
        log.info("collector stopped", extra=self._summary_fields())

    async def _close_clients(self) -> None:
        self._running = False
        for what, close in (
            ("producer", self.producer.stop),  # flushes what is still queued
            ("consumer", self.consumer.stop),  # leaves the group: partitions move at once
        ):
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await close()
            except Exception as exc:
                log.warning(f"{what} did not close cleanly", extra={"error": repr(exc)})
        if self._close_executor:
            close_executor = getattr(self.executor, "close", None)
            if callable(close_executor):
                try:
                    await close_executor(timeout_s=_CLOSE_TIMEOUT_S)
                except Exception as exc:
                    log.warning("SSH pool did not close cleanly", extra={"error": repr(exc)})

    def _summary_fields(self) -> dict[str, Any]:
        results = {
            f"results_{status}": int(sample.value)
            for metric in self.metrics.results.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.value
            for status in [sample.labels["status"]]
        }
        return {
            "requests_done": self.summary.done,
            **{f"requests_{k}": v for k, v in sorted(self.summary.outcomes.items())},
            **results,
            "abandoned": self.summary.abandoned,
            "revoked": self.summary.revoked,
            "handed_over": self.summary.handed_over,
            **({"fatal": self.summary.fatal} if self.summary.fatal else {}),
        }

    # --- operations --------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy when the loop runs and polls, and Kafka acknowledges what we publish."""
        poll_age = time.monotonic() - self._last_poll if self._last_poll else None
        polling = poll_age is not None and poll_age * 1000 < self.settings.max_poll_interval_ms
        failing_s, failing_error = self.publisher.failing_for_s, self.publisher.last_error
        if self.lanes is not None:
            failing_s, failing_error = self.lanes.failing()
        publishing = failing_s < self.settings.publish_timeout_s
        ok = self._running and not self.stopping and polling and publishing
        details: dict[str, Any] = {
            "collector": self.name,
            "consumer_running": self._running and polling,
            "producer_ok": publishing,
            "stopping": self.stopping,
            "inflight_requests": len(self._tasks),
            # Partitions it can take requests from: with the ledger, only once their lane is
            # open (the ledger read); until then they are listed as opening.
            "assigned_partitions": self._ready_partitions() if self._running else [],
            "shard_partitions": (
                self._ready_partitions(self.topics.shards) if self._running else []
            ),
            "opening_partitions": self._opening_partitions() if self._running else [],
            "paused_partitions": len(self.consumer.paused()) if self._running else 0,
        }
        if not publishing:
            details["publish_error"] = failing_error
        if self._running:
            cancels_ok, details["cancels"] = self.cancels.health()
            ok = ok and cancels_ok
            details["live_output"] = self.live.stats()
        return ok, details

    def _ready_partitions(self, topic: str | None = None) -> list[int]:
        topic = topic or self.topics.requests
        assigned = {tp for tp in self.consumer.assignment() if tp.topic == topic}
        if self.lanes is not None:
            assigned = {tp for tp in assigned if self.lanes.get(tp) is not None}
        return sorted(tp.partition for tp in assigned)

    def _opening_partitions(self) -> list[int]:
        if self.lanes is None:
            return []
        return sorted(
            tp.partition
            for tp in self.consumer.assignment()
            if tp.topic == self.topics.requests and not self.lanes.get(tp)
        )


async def _cancel(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        _done, still = await asyncio.wait(pending, timeout=_CANCEL_TIMEOUT_S)
        if still:
            log.error("requests did not stop after cancellation", extra={"count": len(still)})


def _names(tps: Iterable[TopicPartition]) -> str:
    """`requests:0,3 shards:1` (partitions by topic, without the topics' common prefix)."""
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(tps):
        by_topic.setdefault(tp.topic.rsplit(".", 1)[-1], []).append(tp.partition)
    return " ".join(f"{t}:{','.join(map(str, ps))}" for t, ps in by_topic.items())
