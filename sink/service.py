"""The sink's loop: getmany → batch → flush when due → commit after the database commit.

One asyncio task polls Kafka, decodes records into rows (or dead letters) and buffers them per
partition (sink/batch.py). When some partition's batch is due, a flush task writes it in one
transaction together with what other partitions have pending; at most one batch per partition
and `max_inflight_flushes` flushes are in flight, so decoding the next records overlaps the
database's work.
A flush retries transient database errors with backoff until it succeeds; meanwhile every
partition is paused (the loop keeps polling, so the consumer stays in its group). Offsets are
committed only for batches whose transaction committed and whose dead letters Kafka has
acknowledged; everything else is read again by whoever owns the partition next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from fleetrun.runtime.kafkaauth import client_options
from schemas import DeadLetter, ErrorInfo, SchemaError, decode_status
from sink.batch import Batcher, BatchLimits
from sink.dlq import DeadLetterPublisher
from sink.errors import describe
from sink.flush import Flush, Flusher, Item
from sink.metrics import SinkMetrics
from sink.rows import dead_letter, decode_result_record, request_row
from sink.settings import SinkSettings
from sink.store import Store, WriteOutcome

log = logging.getLogger("fleetrun.sink")

_MAX_POLL_WAIT_S = 0.1  # the loop's tick: commits, pauses and deadlines are checked this often
# How long a poll waits for more records before pending ones count as caught up (flush_caught_up).
_CAUGHT_UP_WAIT_S = 0.005
_LAG_EVERY_S = 1.0


class SinkService:
    """One sink instance: a consumer in the sink group, its buffers and its flushes."""

    def __init__(
        self,
        settings: SinkSettings,
        store: Store,
        dlq: DeadLetterPublisher,
        metrics: SinkMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s = settings
        self.store = store
        self.dlq = dlq
        self.metrics = metrics
        self.clock = clock
        self.flusher = Flusher(settings, store, dlq, metrics, clock=clock)
        self.batcher: Batcher[TopicPartition, Item] = Batcher(
            BatchLimits(
                max_rows=settings.batch_max_rows,
                max_bytes=settings.batch_max_bytes,
                linger_s=settings.linger_ms / 1000,
                max_buffer_bytes=settings.max_buffer_bytes,
            )
        )
        self.consumer: AIOKafkaConsumer | None = None
        self.running = False
        self._flushes: dict[asyncio.Task[WriteOutcome], Flush] = {}
        self._to_commit: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._first_seen: dict[TopicPartition, int] = {}
        self._commit_lock = asyncio.Lock()
        self._commit_task: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None
        self._db_failures = 0
        self._last_commit = self.clock()
        self._next_lag = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the consumer, subscribe to results and status, join the group."""
        s = self.s
        consumer = AIOKafkaConsumer(
            **client_options(s),
            group_id=s.group_id,
            client_id=f"fleetrun-sink-{s.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group stores what is already in the topics
            # The collector writes in transactions: results of an aborted one (a collector that
            # died mid-transaction) must never be stored.
            isolation_level="read_committed",
            max_partition_fetch_bytes=s.max_partition_fetch_bytes,
            fetch_max_bytes=s.fetch_max_bytes,
            max_poll_records=s.max_poll_records,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(1000, s.session_timeout_ms // 3),
            max_poll_interval_ms=s.max_poll_interval_ms,
            request_timeout_ms=int(s.kafka_timeout_s * 1000),
            check_crcs=s.kafka_check_crcs,
        )
        consumer.subscribe([s.results_topic, s.status_topic], listener=_Rebalance(self))
        self.consumer = consumer  # rebalance callbacks may run while start() joins the group
        try:
            async with asyncio.timeout(s.kafka_timeout_s):
                await consumer.start()
        except BaseException:
            self.consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self.running = True

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set (or a fatal error), then shut down in order."""
        try:
            await self._loop(stop)
        finally:
            await self._shutdown()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For /healthz: healthy while consuming with a reachable database (flushes and probe)."""
        assigned = self.consumer.assignment() if self.consumer else set()
        db_up = self.flusher.db_up and not self.flusher.outages.is_down("database")
        details = {
            "consumer": "running" if self.running else "stopped",
            "database": "up" if db_up else "down",
            "assigned_partitions": len(assigned),
            "paused_partitions": len(self.consumer.paused()) if self.consumer else 0,
            "buffered_bytes": self.batcher.buffered_bytes,
            "inflight_flushes": len(self._flushes),
            "seconds_since_commit": round(self.clock() - self._last_commit, 1),
        }
        return self.running and db_up and self._fatal is None, details

    # -- the loop ---------------------------------------------------------------------------
    async def _loop(self, stop: asyncio.Event) -> None:
        if self.consumer is None:
            return  # stopped while starting: there is nothing to consume from
        consumer = self.consumer
        log.info(
            "sink consuming",
            extra={"topics": f"{self.s.results_topic},{self.s.status_topic}",
                   "group": self.s.group_id},
        )  # fmt: skip
        while not stop.is_set():
            data = await consumer.getmany(
                timeout_ms=int(self._poll_wait_s() * 1000), max_records=self.s.max_poll_records
            )
            now = self.clock()
            for tp, records in data.items():
                self._ingest(tp, records, now)
            if self.s.flush_caught_up and sum(map(len, data.values())) < self.s.max_poll_records:
                # Fewer than asked for: the consumer's buffer is empty, so a partition this
                # poll returned nothing of has caught up (under a backlog every poll is full).
                self.batcher.caught_up(tp for tp, records in data.items() if records)
            self._reap()
            if self._fatal is not None:
                raise self._fatal
            self._start_flushes(now)
            self._commit_in_background()
            self._pause_resume()
            if now >= self._next_lag:
                self._next_lag = now + _LAG_EVERY_S
                self._update_gauges()
            # getmany() returns at once while records are buffered, and decoding is CPU work:
            # yield every round so flushes, commits and signal handlers get their turn.
            await asyncio.sleep(0)

    def _poll_wait_s(self) -> float:
        deadline = self.batcher.next_deadline()
        if deadline is None or len(self._flushes) >= self.s.max_inflight_flushes:
            return _MAX_POLL_WAIT_S  # nothing lingering, or no flush could start anyway
        if self.s.flush_caught_up and self.batcher.lingering():
            # A short poll tells whether more is coming: if not, the batch is written now.
            deadline = min(deadline, self.clock() + _CAUGHT_UP_WAIT_S)
        # At least 1 ms: with a zero timeout an empty getmany() would not wait at all.
        return min(_MAX_POLL_WAIT_S, max(0.001, deadline - self.clock()))

    def _ingest(self, tp: TopicPartition, records: list[ConsumerRecord], now: float) -> None:
        if not records:
            return
        if tp not in self._first_seen:
            self._first_seen[tp] = records[0].offset
        # Per record only what must be: decode into a row (or a dead letter) and its size.
        # Buffering and metrics are per fetched run.
        items: list[Item] = []
        sizes: list[int] = []
        is_results = tp.topic == self.s.results_topic
        for rec in records:
            value = rec.value
            try:
                if is_results:
                    items.append((decode_result_record(value, rec.partition, rec.offset), rec))
                else:
                    items.append((request_row(decode_status(value)), rec))
            except SchemaError as exc:  # bad input never stops the sink: it is dead-lettered
                items.append(self._undecodable(rec, exc))
            key = rec.key
            sizes.append((len(value) if value else 0) + (len(key) if key else 0))
        self.batcher.extend(tp, [rec.offset for rec in records], items, sizes, now)
        self.metrics.records.labels(tp.topic).inc(len(records))

    def _undecodable(self, rec: ConsumerRecord, exc: SchemaError) -> DeadLetter:
        kind = "result" if rec.topic == self.s.results_topic else "status"
        reason = f"not a valid {kind} record: {exc}"
        dead = dead_letter(rec, ErrorInfo.bounded(type(exc).__name__, reason), instance=self.s.name)
        log.warning(
            "record dead-lettered",
            extra={"request_id": dead.request_id or "-", "topic": rec.topic,
                   "partition": rec.partition, "offset": rec.offset, "reason": reason},
        )  # fmt: skip
        self.metrics.dead_letters.labels("decode").inc()
        return dead

    def _start_flushes(self, now: float) -> None:
        # While the database is down, the one retrying flush is the probe; piling more
        # flushes onto a dead server would only multiply reconnect attempts.
        limit = self.s.max_inflight_flushes if self.flusher.db_up else 1
        while len(self._flushes) < limit:
            flush = self.batcher.next_flush(now)
            if not flush:
                return
            self._spawn_flush(flush)

    def _spawn_flush(self, flush: Flush) -> None:
        task = asyncio.create_task(self.flusher.write(flush), name="flush")
        self._flushes[task] = flush
        self.metrics.inflight_flushes.set(len(self._flushes))

    def _reap(self) -> None:
        """Account for finished flushes: offsets to commit, or what went wrong."""
        for task in [t for t in self._flushes if t.done()]:
            flush = self._flushes.pop(task)
            failed = task.cancelled() or task.exception() is not None
            if not task.cancelled() and task.exception() is not None:
                self._fatal = self._fatal or task.exception()
            for batch in flush:
                if failed:
                    self.batcher.abandon(batch)
                    continue
                offset = self.batcher.done(batch)
                if offset is not None:
                    tp = batch.partition
                    self._to_commit[tp] = max(offset, self._to_commit.get(tp, 0))
        self.metrics.inflight_flushes.set(len(self._flushes))

    def _commit_in_background(self) -> None:
        """Commit without holding up the loop (a commit is a round trip to the broker)."""
        if self._to_commit and (self._commit_task is None or self._commit_task.done()):
            self._commit_task = asyncio.create_task(self._commit(), name="commit offsets")

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        """Commit stored batches' offsets for partitions we still own."""
        async with self._commit_lock:
            assigned = self._consumer().assignment()
            for tp in [tp for tp in self._to_commit if tp not in assigned]:
                del self._to_commit[tp]  # no longer ours: the new owner re-reads, harmlessly
            offsets = {tp: o for tp, o in self._to_commit.items() if only is None or tp in only}
            if not offsets:
                return
            try:
                async with asyncio.timeout(self.s.kafka_timeout_s):
                    await self._consumer().commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                for tp in offsets:
                    self._to_commit.pop(tp, None)
                self.metrics.commits.labels("rebalanced").inc()
                log.warning("offset commit skipped", extra={"reason": describe(exc)})
                return
            except (KafkaError, TimeoutError) as exc:
                self.metrics.commits.labels("retry").inc()
                self.metrics.retries.labels("commit").inc()
                self.flusher.outages.failed("kafka", describe(exc), what="commit_retries")
                return
            for tp, offset in offsets.items():
                if self._to_commit.get(tp) == offset:
                    del self._to_commit[tp]
                self._committed[tp] = offset
            self._last_commit = self.clock()
            self.metrics.commits.labels("ok").inc()

    def _pause_resume(self) -> None:
        consumer = self._consumer()
        assigned = consumer.assignment()
        want = set(assigned) if not self.flusher.db_up else self.batcher.to_pause() & assigned
        paused = consumer.paused() & assigned
        if want - paused:
            consumer.pause(*(want - paused))
        if paused - want:
            consumer.resume(*(paused - want))
        self.metrics.paused_partitions.set(len(want))

    def _update_gauges(self) -> None:
        consumer = self._consumer()
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            base = self._committed.get(tp, self._first_seen.get(tp, high))
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - base))
        self.metrics.buffered_bytes.set(self.batcher.buffered_bytes)

    # -- rebalance ----------------------------------------------------------------------------
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let in-flight flushes of revoked partitions finish (bounded) and commit them while
        the partitions are still ours; drop what is only buffered.

        Flushing the buffers here would start new database work inside the group's rebalance,
        stalling every member (for long if the database is down). Dropping them is always
        safe: nothing of theirs was committed, and rows are idempotent when re-read.
        """
        if not revoked or self.consumer is None:
            return  # the first join of the group revokes nothing
        waiting = [t for t, f in self._flushes.items() if any(b.partition in revoked for b in f)]
        if waiting:
            await asyncio.wait(waiting, timeout=self.s.rebalance_timeout_s)
        self._reap()
        await self._commit(only=revoked)
        dropped = self.batcher.revoke(revoked)
        for tp in revoked:
            self._to_commit.pop(tp, None)
            self._committed.pop(tp, None)
            self._first_seen.pop(tp, None)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        log.info(
            "partitions revoked", extra={"partitions": len(revoked), "dropped_records": dropped}
        )

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Start buffering the partitions the group gave us."""
        self.batcher.assign(assigned)
        log.info(
            "partitions assigned",
            extra={"partitions": ",".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
                   or "-"},
        )  # fmt: skip

    # -- shutdown -----------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        """Flush what is buffered, commit, leave the group, close; all within the deadline."""
        deadline = self.clock() + self.s.shutdown_timeout_s
        # Keep a share of the time for leaving the group and closing the pool.
        flush_until = deadline - min(5.0, self.s.shutdown_timeout_s / 4)
        if self.consumer is not None and self._fatal is None:
            with contextlib.suppress(Exception):
                self.consumer.pause(*self.consumer.assignment())
            await self._drain(flush_until)
        for task in self._flushes:
            task.cancel()
        if self._flushes:
            await asyncio.wait(list(self._flushes), timeout=2)
            self._reap()
            log.warning("shutdown deadline passed; unflushed records will be re-read")
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self._commit()
            self.running = False
            try:
                async with asyncio.timeout(max(1.0, deadline - self.clock())):
                    await self.consumer.stop()
            except Exception as exc:
                log.warning("consumer did not stop cleanly", extra={"reason": describe(exc)})
        await self.dlq.stop(max(1.0, deadline - self.clock()))
        await self.store.close(max(1.0, deadline - self.clock()))
        log.info("sink stopped")

    async def _drain(self, until: float) -> None:
        while self.clock() < until:
            self._reap()
            if self._fatal is not None:
                return
            while len(self._flushes) < self.s.max_inflight_flushes:
                flush = self.batcher.next_flush(self.clock(), force=True)
                if not flush:
                    break
                self._spawn_flush(flush)
            await self._commit()
            if not self._flushes and self.batcher.pending_rows == 0:
                return
            if self._flushes:
                await asyncio.wait(
                    list(self._flushes),
                    timeout=max(0.0, until - self.clock()),
                    return_when=asyncio.FIRST_COMPLETED,
                )

    def _consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            raise RuntimeError("SinkService.start() first")
        return self.consumer


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: SinkService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.service.on_assigned(set(assigned))


__all__ = ["SinkService"]
