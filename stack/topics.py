"""Kafka topic helpers that tests and benchmarks share: fleetrun's topics under a prefix of
their own, and how far a consumer group has committed."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient

from stack.config import TOPIC_CONFIGS, TOPIC_PARTITIONS
from stack.env import kafka_options
from stack.kafka import ensure_topics


async def create_topics(
    bootstrap: str,
    prefix: str,
    partitions: dict[str, int] | None = None,
    *,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the fleetrun topics under `prefix`; return their names."""
    wanted = {prefix + name: n for name, n in (partitions or TOPIC_PARTITIONS).items()}
    configs = {prefix + name: c for name, c in TOPIC_CONFIGS.items()}
    await ensure_topics(kafka_options(bootstrap), wanted, timeout_s=timeout_s, configs=configs)
    return list(wanted)


async def delete_topics(bootstrap: str, topics: Iterable[str], *, timeout_s: float = 10.0) -> None:
    """Delete topics a test or benchmark created (`timeout_s`: the admin request timeout)."""
    admin = AIOKafkaAdminClient(
        **kafka_options(bootstrap), request_timeout_ms=round(timeout_s * 1000)
    )
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    finally:
        await admin.close()


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offsets on `topic` added up over its partitions (one with no commit
    counts 0): how many of the topic's records the group is done with."""
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap), request_timeout_ms=10_000)
    await admin.start()
    try:
        return await committed_with(admin, group, topic)
    finally:
        await admin.close()


async def committed_with(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    """committed_total through a started admin client (for polling)."""
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)
