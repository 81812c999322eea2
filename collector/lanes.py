"""The lanes of the requests partitions this collector owns: outbox + replayed ledger each.

On assignment, for each new partition: start its transactional outbox (which fences the
previous owner and aborts what it left open), then read its ledger partition to the end
(read_committed), and only then let the service take requests from it. On revocation or
shutdown: stop starting hosts, let the service drain, then close the outboxes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.producer import sender as _aiokafka_sender

from collector.errors import CollectorError, classify
from collector.kafka import Topics, producer_options
from collector.ledger import LedgerError, PartitionLedger
from collector.outbox import Outbox
from collector.resume import Lane
from collector.settings import CollectorSettings
from fleetrun.runtime.kafkaauth import client_options

log = logging.getLogger("fleetrun.collector.ledger")

_REPLAY_TIMEOUT_S: Final = 120.0
_TOPICS_TIMEOUT_S: Final = 15.0
_EXPIRY_EVERY_S: Final = 60.0
# After a commit the broker writes the transaction's markers; until it has, the next
# transaction's first AddPartitionsToTxn is answered CONCURRENT_TRANSACTIONS and aiokafka retries
# after a fixed 20 ms (`sender.BACKOFF_OVERRIDE`). The markers take 1-3 ms here, so each
# transaction paid ~20 ms of sleep, and a host waits for one before it starts: measured 25 ms a
# transaction at 20 ms, 2-5 ms at 2 ms. aiokafka has no setting for it; the constant is module
# state read at each retry, and tests/unit/test_collector_lanes.py fails if it disappears.
TXN_RETRY_S: Final = 0.002


def transactional_id(settings: CollectorSettings, topics: Topics, partition: int) -> str:
    """One id per requests partition and group: its next owner fences the previous one."""
    return f"{settings.group_id}.{topics.requests}.{partition}"


class Lanes:
    """Outboxes and ledgers of the owned requests partitions."""

    def __init__(
        self,
        settings: CollectorSettings,
        topics: Topics,
        collector: str,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.collector = collector
        self._on_commit = on_commit
        self.lanes: dict[TopicPartition, Lane] = {}
        self._last_expiry = time.monotonic()
        self._closed = False

    def is_closed(self) -> bool:
        """Whether every lane was closed for good (the collector is stopping)."""
        return self._closed

    def get(self, tp: TopicPartition) -> Lane | None:
        return self.lanes.get(tp)

    async def open(self, assigned: Iterable[TopicPartition]) -> None:
        """Outbox first (fencing), then the ledger read to its end, for each new partition."""
        new = sorted((tp for tp in assigned if tp not in self.lanes), key=lambda t: t.partition)
        if not new or self._closed:
            return
        started = time.monotonic()
        outboxes: dict[TopicPartition, Outbox] = {}
        ledgers = {tp: PartitionLedger(tp.partition, collector=self.collector) for tp in new}
        try:
            for tp in new:
                outboxes[tp] = Outbox(
                    self._producer_factory(tp.partition),
                    name=f"{self.topics.requests}[{tp.partition}]",
                    on_commit=self._on_commit,
                )
            # Concurrently: each start is a few round trips to the transaction coordinator,
            # and the group's rebalance waits for all of them.
            starts = await asyncio.gather(
                *(outbox.start() for outbox in outboxes.values()), return_exceptions=True
            )
            failed = next((r for r in starts if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
            producers_at = time.monotonic()
            await self._replay(ledgers)
        except BaseException:
            # A failed replay, or a stop while the group was still assigning (the consumer
            # cancels its callback): these outboxes belong to no lane, so no one else closes
            # their producers.
            await _close_all(outboxes.values())
            raise
        if self.is_closed():
            # The group's assignment callback runs beside the main loop: the collector shut
            # down (and closed every lane) while these were being opened.
            await _close_all(outboxes.values())
            return
        for tp in new:
            lane = Lane(outboxes[tp], ledgers[tp], self.topics.ledger)
            outboxes[tp].set_mark_encoder(lane.encode_marks)
            self.lanes[tp] = lane
        log.info(
            "ledger read",
            extra={
                "topic": self.topics.requests,  # or the shards topic (collector.lanesets)
                "partitions": ",".join(str(tp.partition) for tp in new),
                "records": sum(ledger.replayed for ledger in ledgers.values()),
                "requests": sum(len(ledger.requests) for ledger in ledgers.values()),
                "unfinished": sum(
                    1
                    for ledger in ledgers.values()
                    for prior in ledger.requests.values()
                    if not prior.completed
                ),
                "took_ms": int((time.monotonic() - started) * 1000),
                "producers_ms": int((producers_at - started) * 1000),
            },
        )

    async def check_partitions(self, producer: AIOKafkaProducer) -> None:
        """The ledger must be co-partitioned with the requests topic, or refuse to start."""
        # The producer fetches a topic's metadata on demand (the consumer only knows topics it
        # subscribed to), within the publish deadline.
        try:
            async with asyncio.timeout(_TOPICS_TIMEOUT_S):
                requests = await producer.partitions_for(self.topics.requests)
                ledger = await producer.partitions_for(self.topics.ledger)
        except (KafkaError, TimeoutError) as exc:
            raise classify(exc, f"reading the partitions of {self.topics.ledger}") from exc
        if len(requests) != len(ledger):
            raise CollectorError(
                f"the ledger topic {self.topics.ledger} has {len(ledger)} partitions and "
                f"{self.topics.requests} has {len(requests)}: they must have the same number "
                "(the ledger of requests partition p is ledger partition p). Add partitions to "
                "the ledger topic (kafka-topics.sh --alter --partitions N) and start again.",
                retriable=False,
            )

    def hand_over(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """No new host starts on these partitions (all when None) from now on."""
        for tp, lane in self.lanes.items():
            if tps is None or tp in set(tps):
                lane.handing_over = True

    async def close(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """Commit what the outboxes still hold, then close them."""
        self._closed |= tps is None  # all of them: the collector is stopping
        chosen = list(self.lanes) if tps is None else [tp for tp in tps if tp in self.lanes]
        lanes = [self.lanes.pop(tp) for tp in chosen]
        await asyncio.gather(*(lane.outbox.close() for lane in lanes), return_exceptions=True)

    async def expire(self) -> None:
        """Tombstone request entries past the retention (a request_id may then run again)."""
        if time.monotonic() - self._last_expiry < _EXPIRY_EVERY_S:
            return
        self._last_expiry = time.monotonic()
        retention = timedelta(seconds=self.settings.ledger_retention_s)
        now = datetime.now(UTC)
        for lane in list(self.lanes.values()):
            keys = lane.ledger.expired(now, retention)
            if keys:
                records = [lane.entry((key, None)) for key in keys]
                try:
                    await lane.outbox.write(records)
                except CollectorError as exc:
                    log.warning("ledger expiry not written", extra={"error": str(exc)})

    def failing(self) -> tuple[float, str | None]:
        """How long the longest-failing outbox has been failing, and its last error."""
        worst, error = 0.0, None
        now = time.monotonic()
        for lane in self.lanes.values():
            since = lane.outbox.failing_since
            if since is not None and now - since > worst:
                worst, error = now - since, lane.outbox.last_error
        return worst, error

    def _producer_factory(self, partition: int) -> _ProducerFactory:
        return _ProducerFactory(
            self.settings, transactional_id(self.settings, self.topics, partition)
        )

    async def _replay(self, ledgers: dict[TopicPartition, PartitionLedger]) -> None:
        tps = {TopicPartition(self.topics.ledger, tp.partition): ledgers[tp] for tp in ledgers}
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=f"fleetrun-collector-{self.collector}-ledger",
        )
        try:
            async with asyncio.timeout(_REPLAY_TIMEOUT_S):
                await consumer.start()
                consumer.assign(list(tps))
                await consumer.seek_to_beginning(*tps)
                # read_committed: the end is the last stable offset; the previous owner's open
                # transaction was aborted by this collector's outbox start (same id).
                ends = await consumer.end_offsets(list(tps))
                remaining = {tp for tp in tps if ends[tp] > 0}
                while remaining:
                    batch = await consumer.getmany(*remaining, timeout_ms=500)
                    for tp, records in batch.items():
                        for record in records:
                            try:
                                tps[tp].apply(record.key, record.value)
                            except LedgerError as exc:
                                log.error("ledger record ignored", extra={"error": str(exc)})
                    for tp in list(remaining):
                        if await consumer.position(tp) >= ends[tp]:
                            remaining.discard(tp)
        except (KafkaError, TimeoutError) as exc:
            raise classify(exc, f"reading the ledger {self.topics.ledger}") from exc
        finally:
            await consumer.stop()


class _ProducerFactory:
    """Builds the transactional producer of one partition (again, after a fatal error)."""

    def __init__(self, settings: CollectorSettings, txn_id: str) -> None:
        self.settings = settings
        self.txn_id = txn_id

    def __call__(self) -> AIOKafkaProducer:
        tighten_txn_retry()
        # linger 0: the outbox batches by itself (everything queued goes into one transaction),
        # and a host waiting for its `started` mark should not wait for a linger on top.
        options = producer_options(self.settings) | {"linger_ms": 0}
        return AIOKafkaProducer(**options, transactional_id=self.txn_id)


def tighten_txn_retry() -> None:
    """Retry a transaction start blocked by the previous one's markers after 2 ms, not 20."""
    if not isinstance(getattr(_aiokafka_sender, "BACKOFF_OVERRIDE", None), float):
        log.warning("this aiokafka has no BACKOFF_OVERRIDE: transactions start up to 20 ms late")
        return
    _aiokafka_sender.BACKOFF_OVERRIDE = TXN_RETRY_S


async def _close_all(outboxes: Iterable[Outbox]) -> None:
    """Close outboxes that belong to no lane; shielded, so it finishes even if the caller is
    cancelled again meanwhile."""
    closing = asyncio.gather(*(o.close() for o in outboxes), return_exceptions=True)
    await asyncio.shield(closing)
