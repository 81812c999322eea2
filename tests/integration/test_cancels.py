"""Cancels on the real Kafka: the collector's CancelWatcher, and `fleetrun cancel` end to end.

The handler does not act on cancels yet (its wiring is separate work), so the test that needs a
collector's answer plays that collector's part with a real CancelWatcher: when the cancel's
event fires it publishes what a cancelled request publishes (a killed host's result, a skipped
one's, and the completed status with cancelled_by).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Final

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import schemas
from collector.cancels import CancelWatcher
from collector.kafka import KafkaPublisher, make_producer
from collector.kafka import Topics as CollectorTopics
from collector.outcome import KILLED, not_started
from collector.settings import CollectorSettings
from fleetrun.cli.errors import (
    EXIT_ALREADY_FINISHED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_WAIT_TIMEOUT,
)
from fleetrun.cli.settings import CliSettings
from schemas import Cancel, ErrorInfo, Request, Status, StatusCounts
from stack.env import StackEnv, kafka_options
from tests.support.cli import run_fleetrun
from tests.support.kafka import Topics, consume_n
from tests.support.records import make_result
from tests.support.settings import process_env

HOUR_MS: Final = 3_600_000


@pytest.fixture
async def producer(stack_env: StackEnv) -> AsyncIterator[AIOKafkaProducer]:
    made = AIOKafkaProducer(**kafka_options(stack_env.kafka_bootstrap), acks="all")
    await made.start()
    yield made
    await made.stop()


@pytest.fixture
async def watcher(stack_env: StackEnv, topics: Topics) -> AsyncIterator[CancelWatcher]:
    """A collector's cancel watcher on this test's topics (not started)."""
    settings = CollectorSettings(
        kafka_bootstrap=stack_env.kafka_bootstrap,
        **stack_env.kafka_admin,
        topic_prefix=topics.prefix,
        id="cancel-test",
    )
    kafka_producer = make_producer(settings)
    await kafka_producer.start()
    made = CancelWatcher.from_settings(
        settings, CollectorTopics.from_prefix(topics.prefix), KafkaPublisher(kafka_producer, 10)
    )
    yield made
    await made.stop()
    await kafka_producer.stop()


def _cancel(rid: str, principal: str = "alice", reason: str | None = "wrong hosts") -> Cancel:
    return Cancel.new(rid, principal=principal, reason=reason)


async def test_the_watcher_reads_back_the_lookback_and_sees_a_new_cancel_within_a_second(
    topics: Topics, producer: AIOKafkaProducer, watcher: CancelWatcher
) -> None:
    old, recent, new = (str(uuid.uuid4()) for _ in range(3))
    now_ms = int(time.time() * 1000)
    for rid, written_ms in ((old, now_ms - 2 * HOUR_MS), (recent, now_ms - HOUR_MS // 6)):
        await producer.send_and_wait(
            topics["cancels"],
            schemas.encode(_cancel(rid)),
            key=rid.encode(),
            timestamp_ms=written_ms,
        )
    await producer.send_and_wait(topics["cancels"], b"not a cancel", key=b"junk")

    await watcher.start()
    assert watcher.cancelled(old) is None  # written before the lookback (1 h)
    assert watcher.cancelled(recent) is not None  # read back before start returned

    with watcher.watching(new) as event:
        sent = time.monotonic()
        await producer.send_and_wait(
            topics["cancels"], schemas.encode(_cancel(new, "bob")), key=new.encode()
        )
        async with asyncio.timeout(1.0):
            await event.wait()
        took_s = time.monotonic() - sent
    found = watcher.cancelled(new)
    assert found is not None
    assert found.principal == "bob"
    assert took_s < 1.0

    ((key, value),) = await consume_n(topics.bootstrap, topics["dlq"], 1)
    letter = schemas.decode_dead_letter(value)
    assert key == b"junk"
    assert (letter.source_topic, letter.value, letter.stage) == (
        topics["cancels"],
        b"not a cancel",
        "collector",
    )
    assert watcher.health()[0]


# --- `fleetrun cancel` --------------------------------------------------------------------------


async def _cli(
    stack_env: StackEnv, topics: Topics, *args: str, timeout_s: float = 60
) -> tuple[int, str, str]:
    env = process_env(
        CliSettings, stack_env, {"topic_prefix": topics.prefix, "principal": "tester"}
    )
    return await run_fleetrun(env, "cancel", *args, timeout_s=timeout_s)


def killed(cancel: Cancel) -> ErrorInfo:
    """The error of a host whose command a cancel killed (as collector.outcome words it)."""
    return ErrorInfo.bounded(KILLED, f"killed: {cancel.message}; sent TERM: the command ended")


def _request(rid: str) -> Request:
    return Request.new(principal="alice", command="sleep 600", targets=["web[1-3]"], request_id=rid)


async def _publish(producer: AIOKafkaProducer, topic: str, rid: str, *records: bytes) -> None:
    for value in records:
        await producer.send_and_wait(topic, value, key=rid.encode())


async def _cancels_written(topics: Topics, producer: AIOKafkaProducer) -> int:
    """Records on this test's cancels topic."""
    parts = await producer.partitions_for(topics["cancels"])
    consumer = AIOKafkaConsumer(**kafka_options(topics.bootstrap), group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topics["cancels"], p) for p in parts])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def test_cancel_of_an_unknown_request_says_so_and_leaves_the_cancel_on_record(
    stack_env: StackEnv, topics: Topics
) -> None:
    rid = str(uuid.uuid4())
    code, out, err = await _cli(stack_env, topics, rid, "--reason", "typo?")
    assert code == EXIT_NOT_FOUND, err
    assert out.startswith("unknown request (nothing to cancel)")
    ((key, value),) = await consume_n(topics.bootstrap, topics["cancels"], 1)
    cancel = schemas.decode_cancel(value)
    assert key == rid.encode()
    assert (cancel.request_id, cancel.principal, cancel.reason) == (rid, "tester", "typo?")


async def test_cancel_of_a_finished_request_is_a_no_op(
    stack_env: StackEnv, topics: Topics, producer: AIOKafkaProducer
) -> None:
    rid = str(uuid.uuid4())
    accepted = Status.accepted(_request(rid), targets_total=3, collector="c")
    completed = Status.completed(
        rid, StatusCounts.of(["ok", "ok", "failed"]), duration_ms=40, collector="c"
    )
    await _publish(producer, topics["status"], rid, *map(schemas.encode, (accepted, completed)))
    code, out, err = await _cli(stack_env, topics, rid)
    assert code == EXIT_ALREADY_FINISHED, err
    assert out.startswith("request already finished: completed at ")
    assert "(2 ok, 1 failed); nothing to cancel" in out
    assert await _cancels_written(topics, producer) == 0


async def test_cancel_of_a_queued_request_waits_a_bounded_time(
    stack_env: StackEnv, topics: Topics, producer: AIOKafkaProducer
) -> None:
    rid = str(uuid.uuid4())
    await _publish(producer, topics["requests"], rid, schemas.encode(_request(rid)))
    started = time.monotonic()
    code, out, err = await _cli(stack_env, topics, rid, "--wait-timeout", "2s")
    assert code == EXIT_WAIT_TIMEOUT, err
    assert "no collector has taken the request within 2s" in out
    assert time.monotonic() - started < 30
    assert await _cancels_written(topics, producer) == 1


async def test_cancel_of_a_running_request_reports_skipped_and_killed_hosts(
    stack_env: StackEnv, topics: Topics, producer: AIOKafkaProducer, watcher: CancelWatcher
) -> None:
    rid = str(uuid.uuid4())
    await watcher.start()
    accepted = Status.accepted(_request(rid), targets_total=3, collector="c")
    await _publish(producer, topics["status"], rid, schemas.encode(accepted))

    async def collector_part() -> None:
        # What the collector running the request does once its cancel arrives.
        with watcher.watching(rid) as event:
            await event.wait()
            cancel = watcher.cancelled(rid)
            assert cancel is not None
            results = [
                make_result(rid, "web1", status="ok"),
                make_result(rid, "web2", status="error", error=killed(cancel)),
                make_result(rid, "web3", status="skipped", error=not_started(cancel.message).error),
            ]
            counts = StatusCounts.of(r.status for r in results)
            completed = Status.completed(rid, counts, duration_ms=9, collector="c", cancel=cancel)
            await _publish(
                producer,
                topics["results"],
                rid,
                *(schemas.encode(r) for r in results),
            )
            await _publish(producer, topics["status"], rid, schemas.encode(completed))

    answering = asyncio.create_task(collector_part())
    try:
        code, out, err = await _cli(stack_env, topics, rid, "--reason", "maintenance")
    finally:
        if not answering.done():  # the CLI never sent its cancel: fail on its output below
            answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
    assert code == EXIT_OK, err
    assert out.strip() == (
        "cancelled: 1 hosts skipped, 1 killed "
        "(request cancelled by tester: maintenance; 1 had finished)"
    )
