"""The collector's Kafka edges: topic names, client construction, and publishing with deadlines."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from collector.errors import CollectorError, classify
from collector.settings import CollectorSettings
from fleetrun.runtime import outage
from fleetrun.runtime.backoff import backoff_delay
from fleetrun.runtime.kafkaauth import client_options

log = logging.getLogger("fleetrun.collector.kafka")

# Producer records carry a little framing around the value (batch header, key, headers).
_RECORD_OVERHEAD: Final = 16_384
_BACKOFF_BASE_S: Final = 0.2
_BACKOFF_MAX_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Topics:
    """The fleetrun topics under one prefix."""

    requests: str
    results: str
    status: str
    dlq: str
    ledger: str
    cancels: str
    output: str
    shards: str
    shard_ledger: str

    @classmethod
    def from_prefix(cls, prefix: str) -> Topics:
        """`<prefix>requests`, `<prefix>results`, `<prefix>status`, `<prefix>dlq`, `…ledger`,
        `…cancels`, `…output`, `…shards`, `…shard-ledger`."""
        return cls(
            prefix + "requests",
            prefix + "results",
            prefix + "status",
            prefix + "dlq",
            prefix + "ledger",
            prefix + "cancels",
            prefix + "output",
            prefix + "shards",
            prefix + "shard-ledger",
        )


def make_consumer(settings: CollectorSettings) -> AIOKafkaConsumer:
    """The request consumer: manual commits, group membership kept alive while paused."""
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=settings.group_id,
        client_id=f"fleetrun-collector-{settings.name}",
        enable_auto_commit=False,
        # A new group starts at the oldest request still kept: queued requests submitted before
        # the first collector ran must not be skipped (stale ones are caught by expires_at).
        auto_offset_reset="earliest",
        max_poll_interval_ms=settings.max_poll_interval_ms,
        session_timeout_ms=settings.session_timeout_ms,
        # The revocation callback drains in-flight work for up to rebalance_drain_s: the group
        # must wait for it rather than evict this member mid-drain.
        rebalance_timeout_ms=max(
            settings.session_timeout_ms, int((settings.rebalance_drain_s + 15) * 1000)
        ),
        isolation_level="read_committed",
        # Partitions added to the requests topic are noticed within a minute, not five.
        metadata_max_age_ms=60_000,
        # A partition's next fetch waits behind the in-flight long poll of its broker; 100 ms
        # instead of 500 bounds that wait (the cost: ten empty fetches a second when idle).
        fetch_max_wait_ms=100,
    )


def make_producer(settings: CollectorSettings) -> AIOKafkaProducer:
    """The producer for results, statuses and dead letters: acks=all, idempotent."""
    return AIOKafkaProducer(**producer_options(settings))


def producer_options(settings: CollectorSettings) -> dict[str, Any]:
    """What every collector producer shares (the outboxes add a transactional id)."""
    return {
        **client_options(settings),
        "client_id": f"fleetrun-collector-{settings.name}",
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": settings.max_message_bytes + _RECORD_OVERHEAD,
        # All results of a request share its partition, and the idempotent producer keeps one
        # batch in flight per partition: aiokafka's default 16 KiB batch (a handful of results)
        # made a big request crawl one round trip at a time until sends timed out and retried.
        "max_batch_size": settings.producer_batch_bytes,
        "linger_ms": 5,  # results of one request finishing together share a batch
    }


class Publisher(Protocol):
    """What a request handler publishes through (KafkaPublisher; a fake in unit tests)."""

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, **log_extra: Any
    ) -> None: ...


class KafkaPublisher:
    """Sends records and waits for Kafka's acknowledgement, each wait under a deadline."""

    def __init__(self, producer: AIOKafkaProducer, timeout_s: float) -> None:
        self.producer = producer
        self.timeout_s = timeout_s
        self._failing_since: float | None = None
        self.last_error: str | None = None

    @property
    def failing_for_s(self) -> float:
        """How long publishing has been failing (0 when the last attempt succeeded)."""
        since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """One send, acknowledged by every in-sync replica within the deadline, or raise."""
        try:
            async with asyncio.timeout(self.timeout_s):
                ack = await self.producer.send(topic, value, key=key)
                await ack
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = classify(exc, f"publishing to {topic}")
            self._note_failure(error)
            raise error from exc
        self._failing_since = None

    async def publish(self, topic: str, key: bytes | None, value: bytes, **log_extra: Any) -> None:
        """Send until acknowledged: retriable failures are retried with backoff, forever.

        Kafka being away is not a reason to lose a result: the request simply stays in flight
        (uncommitted) until the broker is back or the collector stops. A record re-sent after a
        deadline may land twice; consumers de-duplicate on their idempotency keys.
        """
        failures = 0
        while True:
            try:
                await self.send(topic, key, value)
            except CollectorError as exc:
                if not exc.retriable:
                    raise
                failures += 1
                delay = backoff_delay(failures, _BACKOFF_BASE_S, _BACKOFF_MAX_S, random.random())
                # Not a line per retry: the outage tracker writes one when Kafka goes, a summary
                # now and then, and one when it is back, with the retries counted.
                outage.tracker().failed(
                    "kafka", str(exc), what="publish_retries", fields={"topic": topic} | log_extra
                )
                await asyncio.sleep(delay)
            else:
                if failures:
                    outage.tracker().ok("kafka")
                return

    def _note_failure(self, error: CollectorError) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self.last_error = str(error)
