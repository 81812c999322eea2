"""The services' retry loops report to the outage tracker instead of logging every retry, and
/healthz reads it. Scripted stores and producers; no servers."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from collector import kafka as collector_kafka
from collector.kafka import KafkaPublisher
from fleetrun.runtime import outage
from fleetrun.runtime.ops import all_healthy
from fleetrun.runtime.outage import Outages
from schemas import DeadLetter, ErrorInfo, format_timestamp
from sink.batch import Batch
from sink.dlq import DeadLetterPublisher
from sink.flush import Flush, Flusher
from sink.metrics import SinkMetrics
from sink.partitions import Partitions
from sink.service import SinkService
from sink.settings import SinkSettings
from sink.store import Store
from tests.support.fakes import FakeDeadLetters, ScriptedStore

SETTINGS = SinkSettings(retry_backoff_s=0.0001, retry_backoff_max_s=0.0002)
DEAD = DeadLetter(
    source_topic="t.results",
    partition=0,
    offset=3,
    key=None,
    value=b"x",
    error=ErrorInfo(type="SchemaError", message="not JSON"),
    stage="sink",
    at=format_timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
    instance="s-1",
)


def one_flush() -> Flush:
    """A flush of one dead letter: it is stored, then published to the dead-letter topic."""
    tp = TopicPartition("t.results", 0)
    return [Batch(partition=tp, items=[DEAD], nbytes=1, first_offset=3, commit_offset=4, epoch=1)]


@pytest.fixture
def outages(monkeypatch: pytest.MonkeyPatch) -> Outages:
    """A fresh process tracker (what services without their own reach through tracker())."""
    mine = Outages()
    monkeypatch.setattr(outage, "tracker", lambda: mine)
    return mine


def _fleetrun_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("fleetrun")]


class FlakyProducer:
    """Refuses the first `failures` sends the way aiokafka does when the broker is away."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None
    ) -> asyncio.Future[None]:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("Connection at 127.0.0.1:9092 closed")
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_publish_retries_are_counted_not_logged_each(
    outages: Outages, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(collector_kafka, "_BACKOFF_BASE_S", 0.0001)
    monkeypatch.setattr(collector_kafka, "_BACKOFF_MAX_S", 0.0002)
    producer = FlakyProducer(failures=50)
    publisher = KafkaPublisher(producer, timeout_s=5)
    with caplog.at_level(logging.INFO):
        await publisher.publish("t.results", b"k", b"v", request_id="r-1", host="web01")
    assert producer.sent == [b"v"]
    down, back = _fleetrun_lines(caplog)
    assert (down.getMessage(), back.getMessage()) == ("kafka unavailable", "kafka available again")
    assert (down.__dict__["topic"], down.__dict__["request_id"]) == ("t.results", "r-1")
    assert back.__dict__["publish_retries"] == 50
    assert not outages.is_down("kafka")


async def test_flush_retries_are_counted_not_logged_each(caplog: pytest.LogCaptureFixture) -> None:
    outages = Outages()
    store = ScriptedStore(*[OSError("refused")] * 40)
    flusher = Flusher(SETTINGS, store, FakeDeadLetters(), SinkMetrics(), outages=outages)
    seen_down: list[bool] = []
    store.on_write = lambda _: seen_down.append(outages.is_down("database"))
    with caplog.at_level(logging.INFO):
        await flusher.write(one_flush())
    down, back = _fleetrun_lines(caplog)
    assert (down.getMessage(), back.getMessage()) == (
        "database unavailable",
        "database available again",
    )
    assert down.__dict__["consumption"] == "paused"
    assert back.__dict__["flush_retries"] == 40
    assert seen_down == [False] + [True] * 40


async def test_dead_letter_publish_retries_are_counted_not_logged_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outages = Outages()
    dlq = FakeDeadLetters(*[KafkaConnectionError("closed")] * 10)
    flusher = Flusher(SETTINGS, ScriptedStore(), dlq, SinkMetrics(), outages=outages)
    with caplog.at_level(logging.INFO):
        await flusher.write(one_flush())
    assert [r.getMessage() for r in _fleetrun_lines(caplog)] == [
        "kafka unavailable",
        "kafka available again",
    ]
    assert _fleetrun_lines(caplog)[-1].__dict__["dead_letter_publish_retries"] == 10


async def test_sink_health_says_the_database_is_down_when_the_probe_does(
    outages: Outages,
) -> None:
    # An idle sink: no flush has failed, but the probe found the database gone.
    service = SinkService(
        SETTINGS,
        Store(SETTINGS, Partitions(SETTINGS)),
        DeadLetterPublisher(SETTINGS),
        SinkMetrics(),
    )
    service.running = True
    health = all_healthy(service.health, lambda: outages.health(["kafka", "database"]))
    outages.ok("kafka")
    outages.ok("database")
    ok, doc = health()
    assert ok
    assert doc["database"] == "up"
    outages.failed("database", "ConnectionRefusedError: [Errno 111] refused")
    ok, doc = health()
    assert not ok
    assert doc["database"] == "down"
    assert doc["dependencies"]["database"]["up"] is False
    assert doc["dependencies"]["database"]["error"].startswith("ConnectionRefusedError")
    assert doc["dependencies"]["kafka"]["up"] is True
