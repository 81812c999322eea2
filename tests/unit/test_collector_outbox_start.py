"""Starting a partition's transactional producer is bounded: a hung InitProducerId fails the
partition's lanes (the collector stops and the group moves on) instead of holding a rebalance."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from collector import outbox as outbox_module
from collector.errors import CollectorError
from collector.outbox import Outbox


class HangingProducer:
    """A producer whose start never returns (InitProducerId never answered) or fails."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.stopped = False

    async def start(self) -> None:
        if self.fail is not None:
            raise self.fail
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stopped = True


def _outbox(producer: HangingProducer) -> Outbox:
    factory: Any = lambda: producer  # noqa: E731 - the outbox calls its factory for a producer
    return Outbox(factory, name="t.requests[0]")


async def test_a_start_that_never_finishes_fails_with_the_partition_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(outbox_module, "_START_SLOW_S", 0.05)
    monkeypatch.setattr(outbox_module, "_START_TIMEOUT_S", 0.2)
    producer = HangingProducer()
    with pytest.raises(
        CollectorError, match=r"starting the transactional producer of t\.requests\[0\]"
    ):
        await _outbox(producer).start()
    assert producer.stopped  # its connections closed
    assert "transactional producer still starting" in caplog.text


async def test_a_failed_start_is_a_collector_error_and_stops_the_producer() -> None:
    producer = HangingProducer(KafkaConnectionError("no broker"))
    with pytest.raises(CollectorError, match="no broker"):
        await _outbox(producer).start()
    assert producer.stopped
