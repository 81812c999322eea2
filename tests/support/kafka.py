"""Kafka helpers for tests: a unique topic prefix per test, and reading a topic back.

Creating and deleting topics, and reading committed offsets, are in stack.topics (benchmarks
use them too).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from stack.env import kafka_options


@dataclass(frozen=True, slots=True)
class Topics:
    """A private set of fleetrun topics for one test (the `topics` fixture)."""

    prefix: str
    bootstrap: str

    def __getitem__(self, kind: str) -> str:
        return self.prefix + kind


def unique_prefix() -> str:
    """A topic prefix no other test uses, so state never leaks between tests."""
    return f"t{uuid.uuid4().hex[:12]}."


async def consume_n(
    bootstrap: str, topic: str, n: int, *, timeout_s: float = 30.0
) -> list[tuple[bytes | None, bytes]]:
    """Read the first `n` records of `topic` from the beginning as (key, value), with a deadline."""
    import asyncio

    consumer = AIOKafkaConsumer(
        topic,
        **kafka_options(bootstrap),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
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
