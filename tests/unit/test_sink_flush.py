"""One flush's retry policy, with a scripted store and dead-letter publisher (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import TopicPartition

from schemas import DeadLetter, ErrorInfo
from sink.batch import Batch
from sink.dlq import DeadLetterPublisher
from sink.errors import FatalSinkError
from sink.flush import Flusher
from sink.metrics import SinkMetrics
from sink.settings import SinkSettings
from sink.store import Store, WriteBatch, WriteOutcome

SETTINGS = SinkSettings(retry_backoff_s=0.001, retry_backoff_max_s=0.002)
DEAD = DeadLetter(
    source_topic="t.results",
    partition=0,
    offset=3,
    key=None,
    value=b"x",
    error=ErrorInfo(type="SchemaError", message="not JSON"),
    stage="sink",
    at=datetime(2026, 1, 1, tzinfo=UTC),
    instance="s-1",
)


class ScriptedStore:
    """Raises the scripted errors in turn, then stores."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.db_up_seen: list[bool] = []

    async def write(self, batch: WriteBatch) -> WriteOutcome:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return WriteOutcome(results_inserted=0, dead=list(batch.dead))


class Dlq:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.published: list[DeadLetter] = []

    async def publish(self, dead: list[DeadLetter]) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.published.extend(dead)


def flusher(store: ScriptedStore, dlq: Dlq | None = None) -> tuple[Flusher, SinkMetrics]:
    metrics = SinkMetrics()
    f = Flusher(
        SETTINGS,
        cast(Store, store),
        cast(DeadLetterPublisher, dlq or Dlq()),
        metrics,
    )
    return f, metrics


def one_flush() -> list[Batch[Any, Any]]:
    tp = TopicPartition("t.results", 0)
    return [Batch(partition=tp, items=[DEAD], nbytes=1, first_offset=3, commit_offset=4, epoch=1)]


def _value(metrics: SinkMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_an_outage_is_retried_until_the_database_is_back() -> None:
    store = ScriptedStore(
        ConnectionRefusedError(111, "refused"), asyncpg.CannotConnectNowError("starting")
    )
    dlq = Dlq()
    f, metrics = flusher(store, dlq)
    out = await f.write(one_flush())
    assert store.calls == 3
    assert f.db_up
    assert dlq.published == [DEAD] == out.dead
    assert _value(metrics, "fleetrun_sink_retries_total", operation="flush") == 2
    assert _value(metrics, "fleetrun_sink_database_up") == 1


async def test_the_database_is_reported_down_while_retrying() -> None:
    store = ScriptedStore(*[OSError("down")] * 3)
    f, _ = flusher(store)
    seen: list[bool] = []
    original = store.write

    async def spy(batch: WriteBatch) -> WriteOutcome:
        seen.append(f.db_up)
        return await original(batch)

    store.write = spy  # type: ignore[method-assign]
    await f.write(one_flush())
    assert seen == [True, False, False, False]


async def test_a_configuration_error_stops_the_sink() -> None:
    f, _ = flusher(ScriptedStore(asyncpg.InvalidPasswordError("password authentication failed")))
    with pytest.raises(FatalSinkError, match="password authentication failed"):
        await f.write(one_flush())


async def test_unexplained_errors_are_retried_a_few_times_then_stop_the_sink() -> None:
    recovers = ScriptedStore(*[RuntimeError("transport closed")] * 5)
    f, _ = flusher(recovers)
    await f.write(one_flush())
    assert recovers.calls == 6
    stuck = ScriptedStore(*[RuntimeError("a bug")] * 6)
    f, _ = flusher(stuck)
    with pytest.raises(FatalSinkError, match="a bug"):
        await f.write(one_flush())


async def test_dead_letters_are_published_after_the_transaction_with_retries() -> None:
    from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

    dlq = Dlq(KafkaConnectionError())
    f, metrics = flusher(ScriptedStore(), dlq)
    await f.write(one_flush())
    assert dlq.published == [DEAD]
    assert _value(metrics, "fleetrun_sink_retries_total", operation="dead_letter_publish") == 1
    f, _ = flusher(ScriptedStore(), Dlq(TopicAuthorizationFailedError()))
    with pytest.raises(FatalSinkError, match="dead-letter topic"):
        await f.write(one_flush())
