"""Kafka helpers for tests: a unique set of fleetrun topics per test, produce and consume."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from stack.config import TOPIC_PARTITIONS
from stack.kafka import ensure_topics


def unique_prefix() -> str:
    """A topic prefix no other test uses, so state never leaks between tests."""
    return f"t{uuid.uuid4().hex[:12]}."


async def create_topics(
    bootstrap: str,
    prefix: str,
    partitions: dict[str, int] | None = None,
    *,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the four fleetrun topics under `prefix`; return their names."""
    wanted = {prefix + name: n for name, n in (partitions or TOPIC_PARTITIONS).items()}
    await ensure_topics(bootstrap, wanted, timeout_s=timeout_s)
    return list(wanted)


async def delete_topics(bootstrap: str, topics: Iterable[str], *, timeout_s: float = 10.0) -> None:
    """Delete topics a test created (`timeout_s`: the admin client's request timeout)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=round(timeout_s * 1000)
    )
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    finally:
        await admin.close()


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offsets on `topic` added up over its partitions (one with no commit
    counts 0): how many of the topic's records the group is done with."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        return await committed_with(admin, group, topic)
    finally:
        await admin.close()


async def committed_with(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    """committed_total through a started admin client (for polling)."""
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def consume_n(
    bootstrap: str, topic: str, n: int, *, timeout_s: float = 30.0
) -> list[tuple[bytes | None, bytes]]:
    """Read the first `n` records of `topic` from the beginning as (key, value), with a deadline."""
    import asyncio

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[tuple[bytes | None, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    out.extend((r.key, r.value) for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return out
