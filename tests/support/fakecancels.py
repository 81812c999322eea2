"""A fake of the cancels consumer (collector.cancels.CancelConsumer): a topic in memory.

Records are appended per partition with a Kafka timestamp; the consumer keeps a position per
assigned partition and serves getmany from there, waking as soon as a record is appended.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

import schemas
from collector.cancels import CancelConsumer
from tests.support.fakes import FakeRecord


@dataclass(frozen=True, slots=True)
class Found:
    """What offsets_for_times returns for a partition (aiokafka's OffsetAndTimestamp)."""

    offset: int
    timestamp: int


class FakeCancelConsumer(CancelConsumer):
    """The cancels topic `topic` with `partitions` partitions, in memory."""

    def __init__(self, topic: str = "t.cancels", partitions: int = 3) -> None:
        self.topic = topic
        self.log: dict[int, list[FakeRecord]] = {p: [] for p in range(partitions)}
        self.positions: dict[TopicPartition, int] = {}
        self.started = False
        self.stopped = False
        self.fail_polls = 0  # the next getmany calls that raise (Kafka away)
        self.polls = 0
        self._appended = asyncio.Event()

    # --- what a test does ----------------------------------------------------------------------

    def append(
        self,
        value: bytes | None,
        *,
        partition: int = 0,
        timestamp_ms: int,
        key: bytes | None = b"key",
    ) -> FakeRecord:
        """Write one record; a waiting getmany returns it at once."""
        records = self.log[partition]
        record = FakeRecord(value, key, self.topic, partition, len(records), timestamp_ms)
        records.append(record)
        self._appended.set()
        return record

    def append_cancel(
        self, cancel: schemas.Cancel, *, partition: int = 0, timestamp_ms: int
    ) -> FakeRecord:
        """Write a cancel record keyed by its request_id."""
        return self.append(
            schemas.encode(cancel),
            partition=partition,
            timestamp_ms=timestamp_ms,
            key=cancel.request_id.encode(),
        )

    def add_partition(self) -> int:
        """Grow the topic by one partition; its number."""
        partition = len(self.log)
        self.log[partition] = []
        return partition

    # --- the Protocol --------------------------------------------------------------------------

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.log) if topic == self.topic else None

    def assign(self, partitions: list[TopicPartition]) -> None:
        # Like aiokafka: a new assignment forgets every position.
        self.positions = dict.fromkeys(partitions, 0)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.positions[tp] = 0

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log[tp.partition]) for tp in partitions}

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, Any]:
        found: dict[TopicPartition, Any] = {}
        for tp, since in timestamps.items():
            hit = next((r for r in self.log[tp.partition] if r.timestamp >= since), None)
            found[tp] = None if hit is None else Found(hit.offset, hit.timestamp)
        return found

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        self.polls += 1
        if self.fail_polls:
            self.fail_polls -= 1
            raise ConnectionError("fake Kafka is away")
        batch = self._take(partitions or tuple(self.positions), max_records)
        if not batch and timeout_ms:
            self._appended.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_ms / 1000):
                    await self._appended.wait()
            batch = self._take(partitions or tuple(self.positions), max_records)
        return batch

    def _take(
        self, partitions: tuple[TopicPartition, ...], max_records: int | None
    ) -> dict[TopicPartition, list[Any]]:
        batch: dict[TopicPartition, list[Any]] = {}
        budget = max_records or 1_000_000
        for tp in partitions:
            records = self.log[tp.partition][self.positions[tp] :][:budget]
            if records:
                batch[tp] = records
                self.positions[tp] += len(records)
                budget -= len(records)
        return batch
