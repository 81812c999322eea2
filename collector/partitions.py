"""The consumer's partitions as the service loop drives them: pause/resume, commits, lag.

Commits go through one lock (the loop and the rebalance listener both commit) and only for
partitions this member still owns; a failed commit is logged and retried on the next round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from collector.errors import classify
from collector.metrics import CollectorMetrics
from collector.offsets import OffsetTracker

log = logging.getLogger("fleetrun.collector")

# Commits are batched in time: each is a write on the broker, and a later commit covers the
# earlier ones. A crash loses at most this much progress (those requests run again).
COMMIT_INTERVAL_S: Final = 0.5
_COMMIT_TIMEOUT_S: Final = 15.0
_POSITION_TIMEOUT_S: Final = 0.2


class Partitions:
    """Pause/resume, offset commits and lag gauges for one consumer."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        tracker: OffsetTracker[TopicPartition],
        metrics: CollectorMetrics,
    ) -> None:
        self.consumer = consumer
        self.tracker = tracker
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._last_commit = 0.0

    def set_paused(self, full: bool) -> None:
        """Pause every assigned partition (full) or resume them all."""
        assigned = self.consumer.assignment()
        paused = self.consumer.paused()
        try:
            if full:
                todo = assigned - paused
                if todo:
                    self.consumer.pause(*todo)
            elif paused:
                self.consumer.resume(*(paused & assigned))
        except IllegalStateError:
            pass  # the assignment changed under us (rebalance); the next round fixes it
        self.metrics.paused_partitions.set(len(self.consumer.paused()))

    def commit_due(self) -> bool:
        """Whether COMMIT_INTERVAL_S has passed since the last commit."""
        return time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S

    async def commit(self, only: Iterable[TopicPartition] | None = None) -> None:
        """Commit the finished offsets of owned partitions (or of `only`, when revoking)."""
        async with self._lock:
            self._last_commit = time.monotonic()
            offsets = self.tracker.pending()
            if only is not None:
                keep = set(only)
                offsets = {tp: o for tp, o in offsets.items() if tp in keep}
            else:
                assigned = self.consumer.assignment()
                offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
            if not offsets:
                return
            try:
                async with asyncio.timeout(_COMMIT_TIMEOUT_S):
                    await self.consumer.commit(offsets)
            except (KafkaError, TimeoutError) as exc:
                # Not fatal: the same offsets (or later ones) are committed next round; a
                # request redelivered meanwhile is the documented at-least-once case.
                log.warning("offset commit failed", extra={"error": str(classify(exc, "commit"))})
                return
            self.tracker.mark_committed(offsets)
            log.debug("offsets committed", extra={"offsets": format_offsets(offsets)})

    async def update_lag(self) -> None:
        """Consumer lag per partition: high watermark minus position."""
        for tp in self.consumer.assignment():
            try:
                high = self.consumer.highwater(tp)
                if high is None:
                    continue  # nothing fetched yet: position may not be known either
                async with asyncio.timeout(_POSITION_TIMEOUT_S):
                    position = await self.consumer.position(tp)
            except (KafkaError, TimeoutError, AssertionError):
                continue
            self.metrics.consumer_lag.labels(str(tp.partition)).set(max(0, high - position))


def format_offsets(offsets: dict[TopicPartition, int]) -> str:
    """`partition:offset,…` for logs."""
    return ",".join(f"{tp.partition}:{o}" for tp, o in sorted(offsets.items()))
