"""One flush's retry policy, with a scripted store and dead-letter publisher (no servers)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from schemas import DeadLetter, ErrorInfo, Status, format_timestamp
from sink.batch import Batch
from sink.dlq import DeadLetterPublisher
from sink.errors import FatalSinkError
from sink.flush import Flush, Flusher
from sink.metrics import SinkMetrics
from sink.partitions import Partitions
from sink.rows import request_row, result_row
from sink.service import SinkService
from sink.settings import SinkSettings
from sink.store import Store
from tests.support.fakes import FakeDeadLetters, ScriptedStore
from tests.support.records import RID, make_counts, make_request, make_result

SETTINGS = SinkSettings(retry_backoff_s=0.001, retry_backoff_max_s=0.002)
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


def flusher(
    store: ScriptedStore, dlq: FakeDeadLetters | None = None
) -> tuple[Flusher, SinkMetrics]:
    metrics = SinkMetrics()
    return Flusher(SETTINGS, store, dlq or FakeDeadLetters(), metrics), metrics


def one_flush() -> Flush:
    tp = TopicPartition("t.results", 0)
    return [Batch(partition=tp, items=[DEAD], nbytes=1, first_offset=3, commit_offset=4, epoch=1)]


def _consumed(topic: str, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 1_700_000_000_000, 0, b"k", b"{}", None, 1, 2, [])


async def test_a_flush_stores_each_status_as_its_own_requests_row() -> None:
    # Statuses are no longer merged in Python: each status record is one requests row, and the
    # store's SQL merges them (tests/integration/test_sink_store.py).
    accepted = request_row(Status.accepted(make_request(), targets_total=1, collector="c"))
    completed = request_row(Status.completed(RID, make_counts(ok=1), duration_ms=1, collector="c"))
    result = result_row(make_result(RID), 0, 7)
    results = TopicPartition(SETTINGS.results_topic, 0)
    status = TopicPartition(SETTINGS.status_topic, 1)
    rec_result = _consumed(results.topic, 7)
    rec_a, rec_b = _consumed(status.topic, 1), _consumed(status.topic, 2)
    flush: Flush = [
        Batch(results, [(result, rec_result)], 1, 7, 8, 1),
        Batch(status, [(accepted, rec_a), DEAD, (completed, rec_b)], 1, 1, 4, 1),
    ]
    store = ScriptedStore()
    f, _ = flusher(store)
    await f.write(flush)
    (batch,) = store.batches
    assert batch.results == [(result, rec_result)]
    assert batch.requests == [(accepted, rec_a), (completed, rec_b)]
    assert batch.dead == [DEAD]


def _value(metrics: SinkMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_an_outage_is_retried_until_the_database_is_back() -> None:
    store = ScriptedStore(
        ConnectionRefusedError(111, "refused"), asyncpg.CannotConnectNowError("starting")
    )
    dlq = FakeDeadLetters()
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
    store.on_write = lambda _: seen.append(f.db_up)
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

    dlq = FakeDeadLetters(KafkaConnectionError())
    f, metrics = flusher(ScriptedStore(), dlq)
    await f.write(one_flush())
    assert dlq.published == [DEAD]
    assert _value(metrics, "fleetrun_sink_retries_total", operation="dead_letter_publish") == 1
    f, _ = flusher(ScriptedStore(), FakeDeadLetters(TopicAuthorizationFailedError()))
    with pytest.raises(FatalSinkError, match="dead-letter topic"):
        await f.write(one_flush())


async def test_a_sink_stopped_while_starting_shuts_down_without_error() -> None:
    # run_sink hands the service its loop even when stopped before Kafka answered: it must
    # only shut down what was started (nothing), not fail on the consumer it never made.
    stop = asyncio.Event()
    stop.set()
    service = SinkService(
        SETTINGS,
        Store(SETTINGS, Partitions(SETTINGS)),
        DeadLetterPublisher(SETTINGS),
        SinkMetrics(),
    )
    await service.run(stop)
    assert not service.running
