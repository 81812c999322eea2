"""One flush: a transaction of batches from several partitions, retried until it is stored.

Transient database errors (connection lost, server restarting) are retried with backoff and
jitter for as long as it takes; meanwhile `db_up` is False and the loop pauses consumption.
After the transaction commits, the flush's dead letters are published to the dead-letter
topic (also retried), and only then is the flush done and its offsets committable.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord, TopicPartition

from fleetrun.runtime import outage
from fleetrun.runtime.backoff import backoff_delay
from schemas import DeadLetter
from sink.batch import Batch
from sink.dlq import DeadLetterSink
from sink.errors import Action, FatalSinkError, classify, describe
from sink.metrics import SinkMetrics
from sink.settings import SinkSettings
from sink.store import ResultStore, WriteBatch, WriteOutcome

log = logging.getLogger("fleetrun.sink")

# Unexplained failures of one flush before the sink stops (see sink/errors.py).
_UNEXPLAINED_RETRIES = 5

# What is buffered per record: its results or requests row with the record it came from, or
# a dead letter for a record that could not be decoded.
Item: TypeAlias = tuple[tuple[Any, ...], ConsumerRecord] | DeadLetter
Flush: TypeAlias = list[Batch[TopicPartition, Item]]  # one transaction, one batch per partition


class Flusher:
    """Writes flushes through the store and tracks whether the database is reachable."""

    def __init__(
        self,
        settings: SinkSettings,
        store: ResultStore,
        dlq: DeadLetterSink,
        metrics: SinkMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        outages: outage.Outages | None = None,
    ) -> None:
        self.s = settings
        self.store = store
        self.dlq = dlq
        self.metrics = metrics
        self.clock = clock
        self.outages = outages or outage.tracker()
        self.db_up = True

    async def write(self, flush: Flush) -> WriteOutcome:
        """Store one flush, retrying transient failures; publish its dead letters."""
        started = self.clock()
        work = self._write_batch(flush)
        attempt = unexplained = 0
        while True:
            try:
                outcome = await self.store.write(work)
                break
            except Exception as exc:
                action = classify(exc)
                if action is not Action.RETRY:
                    # Poison is isolated inside the store; one escaping it is unexplained too.
                    unexplained += 1
                    log.error(
                        "flush failed unexpectedly", exc_info=exc, extra={"attempt": unexplained}
                    )
                if action is Action.FATAL or unexplained > _UNEXPLAINED_RETRIES:
                    raise FatalSinkError(f"database: {describe(exc)}") from exc
                attempt += 1
                self._database_failed(exc, attempt)
                await asyncio.sleep(self._backoff(attempt))
        self._database_ok()
        if outcome.dead:
            await self._publish_dead(outcome.dead)
        self._account(flush, outcome, self.clock() - started)
        return outcome

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(
            attempt, self.s.retry_backoff_s, self.s.retry_backoff_max_s, random.random()
        )

    def _write_batch(self, flush: Flush) -> WriteBatch:
        work = WriteBatch()
        for batch in flush:
            is_results = batch.partition.topic == self.s.results_topic
            for item in batch.items:
                if isinstance(item, DeadLetter):
                    work.dead.append(item)
                elif is_results:
                    work.results.append(item)
                else:
                    work.requests.append(item)
        return work

    def _database_failed(self, exc: BaseException, attempt: int) -> None:
        self.metrics.retries.labels("flush").inc()
        self.metrics.database_up.set(0)
        # One line when the database goes and one when it is back (runtime/outage.py), with
        # the retries counted; consumption is paused meanwhile (db_up).
        self.outages.failed(
            "database",
            describe(exc),
            what="flush_retries",
            fields={"error_type": type(exc).__name__, "consumption": "paused"},
        )
        self.db_up = False

    def _database_ok(self) -> None:
        if not self.db_up:
            self.outages.ok("database")
        self.db_up = True
        self.metrics.database_up.set(1)

    async def _publish_dead(self, dead: list[DeadLetter]) -> None:
        attempt = 0
        while True:
            try:
                await self.dlq.publish(dead)
                if attempt:
                    self.outages.ok("kafka")
                return
            except Exception as exc:
                if classify(exc) is not Action.RETRY:
                    log.error("dead-letter publish failed, cannot continue", exc_info=exc)
                    raise FatalSinkError(f"dead-letter topic: {describe(exc)}") from exc
                attempt += 1
                self.metrics.retries.labels("dead_letter_publish").inc()
                self.outages.failed("kafka", describe(exc), what="dead_letter_publish_retries")
                await asyncio.sleep(self._backoff(attempt))

    def _account(self, flush: Flush, out: WriteOutcome, seconds: float) -> None:
        m = self.metrics
        records = sum(len(b.items) for b in flush)
        m.batch_rows.observe(records)
        m.flushes.labels(out.path).inc()
        m.flush_seconds.observe(seconds)
        m.rows_written.labels("results").inc(out.results_inserted)
        m.rows_written.labels("requests").inc(out.requests_upserted)
        m.rows_written.labels("dead_letters").inc(len(out.dead))
        m.duplicates.inc(max(0, out.results_duplicate))
        if out.rejected:
            m.dead_letters.labels("database").inc(out.rejected)
        log.debug(
            "batch stored",
            extra={"partitions": len(flush), "records": records,
                   "inserted": out.results_inserted, "duplicates": out.results_duplicate,
                   "dead": len(out.dead), "seconds": round(seconds, 4)},
        )  # fmt: skip
