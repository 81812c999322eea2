"""The lanes of every topic the collector takes work from: requests, and shards of big ones.

Each topic has its own ledger (co-partitioned with it) and its own transactional ids, so a
requests partition and a shards partition are handed over independently: `LaneSet` is
collector.lanes.Lanes for both, dispatching by the partition's topic.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer, TopicPartition

from collector.kafka import Topics
from collector.lanes import Lanes
from collector.resume import Lane
from collector.settings import CollectorSettings


def shard_topics(topics: Topics) -> Topics:
    """The shards topic and its ledger in the places Lanes reads requests and ledger from."""
    return dataclasses.replace(topics, requests=topics.shards, ledger=topics.shard_ledger)


class LaneSet:
    """Lanes of the requests partitions and of the shards partitions this collector owns."""

    def __init__(
        self,
        settings: CollectorSettings,
        topics: Topics,
        collector: str,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.requests = Lanes(settings, topics, collector, on_commit)
        self.shards = Lanes(settings, shard_topics(topics), collector, on_commit)
        self._by_topic = {topics.requests: self.requests, topics.shards: self.shards}

    @property
    def all(self) -> tuple[Lanes, Lanes]:
        return self.requests, self.shards

    def get(self, tp: TopicPartition) -> Lane | None:
        lanes = self._by_topic.get(tp.topic)
        return None if lanes is None else lanes.get(tp)

    async def open(self, assigned: Iterable[TopicPartition]) -> None:
        """Lanes for new partitions of both topics (their ledgers read concurrently)."""
        chosen = list(assigned)
        await asyncio.gather(
            *(
                lanes.open([tp for tp in chosen if tp.topic == topic])
                for topic, lanes in self._by_topic.items()
            )
        )

    async def check_partitions(self, producer: AIOKafkaProducer) -> None:
        for lanes in self.all:
            await lanes.check_partitions(producer)

    def hand_over(self, tps: Iterable[TopicPartition] | None = None) -> None:
        chosen = None if tps is None else list(tps)
        for lanes in self.all:
            lanes.hand_over(chosen)

    async def close(self, tps: Iterable[TopicPartition] | None = None) -> None:
        chosen = None if tps is None else list(tps)
        await asyncio.gather(*(lanes.close(chosen) for lanes in self.all))

    async def expire(self) -> None:
        for lanes in self.all:
            await lanes.expire()

    def failing(self) -> tuple[float, str | None]:
        return max((lanes.failing() for lanes in self.all), key=lambda f: f[0])
