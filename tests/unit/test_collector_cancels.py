"""Cancels on the collector: the registry's bounds and events, and the watcher on a fake topic."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Final

import pytest

import schemas
from collector import cancels as cancels_module
from collector.cancelled import CancelRegistry
from collector.cancels import CancelWatcher
from collector.errors import CollectorError
from collector.metrics import CollectorMetrics
from schemas import Cancel
from tests.support.fakecancels import FakeCancelConsumer
from tests.support.fakes import FakePublisher

NOW: Final = 1_714_564_800.0  # 2024-05-01T12:00:00Z
TTL: Final = 3600.0
RIDS: Final = [f"0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a{i:02d}" for i in range(20)]
DLQ: Final = "t.dlq"


class Clock:
    """Wall-clock seconds that a test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cancel(rid: str = RIDS[0], principal: str = "alice", reason: str | None = "oops") -> Cancel:
    return Cancel(
        request_id=rid, principal=principal, reason=reason, submitted_at="2024-05-01T12:00:00Z"
    )


def registry(clock: Callable[[], float], max_entries: int = 100) -> CancelRegistry:
    return CancelRegistry(ttl_s=TTL, max_entries=max_entries, clock=clock)


# --- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written_ago_s", "counts"),
    [(0, True), (TTL - 1, True), (TTL, False), (TTL + 600, False), (-5, True)],
)
def test_a_cancel_counts_for_the_lookback_after_it_was_written(
    written_ago_s: float, counts: bool
) -> None:
    book = registry(Clock())
    assert book.add(cancel(), written_at=NOW - written_ago_s) is counts
    assert (book.cancelled(RIDS[0]) is not None) is counts


def test_the_first_cancel_wins_and_a_repeat_is_not_news() -> None:
    book = registry(Clock())
    assert book.add(cancel(principal="alice"), written_at=NOW)
    assert not book.add(cancel(principal="bob"), written_at=NOW)
    found = book.cancelled(RIDS[0])
    assert found is not None
    assert found.principal == "alice"
    assert book.cancelled(RIDS[1]) is None


def test_cancels_expire_unless_their_request_is_watched() -> None:
    clock = Clock()
    book = registry(clock)
    book.add(cancel(RIDS[0]), written_at=NOW)
    book.add(cancel(RIDS[1]), written_at=NOW)
    with book.watching(RIDS[1]):
        clock.now += TTL
        assert book.cancelled(RIDS[0]) is None
        assert book.cancelled(RIDS[1]) is not None  # the handler still needs who and why
        assert book.expire() == 1
        assert len(book) == 1
    assert book.cancelled(RIDS[1]) is None
    assert book.expire() == 1
    assert len(book) == 0
    # Once expired, a later cancel of the same request counts again.
    assert book.add(cancel(RIDS[0], principal="carol"), written_at=clock.now)


def test_past_max_entries_the_oldest_unwatched_go_first() -> None:
    book = registry(Clock(), max_entries=3)
    book.watch(RIDS[0])
    for rid in RIDS[:5]:
        assert book.add(cancel(rid), written_at=NOW)
    assert len(book) == 3
    assert book.evicted == 2
    kept = [rid for rid in RIDS[:5] if book.cancelled(rid) is not None]
    assert kept == [RIDS[0], RIDS[3], RIDS[4]]  # the watched one stays despite its age


async def test_a_watch_is_set_when_the_cancel_comes_or_at_once_when_it_came() -> None:
    book = registry(Clock())
    later = book.watch(RIDS[0])
    assert not later.is_set()
    book.add(cancel(RIDS[0]), written_at=NOW)
    assert later.is_set()
    book.add(cancel(RIDS[1]), written_at=NOW)
    assert book.watch(RIDS[1]).is_set()
    assert not book.watch(RIDS[2]).is_set()
    assert book.watched == 3


def test_watches_are_counted_and_the_last_unwatch_drops_the_event() -> None:
    book = registry(Clock())
    first = book.watch(RIDS[0])
    assert book.watch(RIDS[0]) is first
    book.unwatch(RIDS[0])
    assert book.is_watched(RIDS[0])
    book.unwatch(RIDS[0])
    assert not book.is_watched(RIDS[0])
    assert book.watched == 0
    assert book.watch(RIDS[0]) is not first


# --- the watcher ----------------------------------------------------------------------------


def ms(seconds: float) -> int:
    return int(seconds * 1000)


@pytest.fixture
def consumer() -> FakeCancelConsumer:
    return FakeCancelConsumer(partitions=3)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def make_watcher(
    consumer: FakeCancelConsumer, publisher: FakePublisher
) -> AsyncIterator[Callable[[], CancelWatcher]]:
    made: list[CancelWatcher] = []

    def make() -> CancelWatcher:
        watcher = CancelWatcher(
            consumer,
            topic=consumer.topic,
            dlq_topic=DLQ,
            publisher=publisher,
            collector="collector-a",
            lookback_s=TTL,
            max_entries=100,
            metrics=CollectorMetrics(),
            clock=Clock(),
        )
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        await watcher.stop()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 1.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the watcher's background task, with a deadline
            await asyncio.sleep(0.005)


async def test_start_reads_back_the_lookback_before_it_returns(
    consumer: FakeCancelConsumer, make_watcher: Callable[[], CancelWatcher]
) -> None:
    consumer.append_cancel(cancel(RIDS[0]), partition=0, timestamp_ms=ms(NOW - TTL - 60))
    consumer.append_cancel(cancel(RIDS[1]), partition=0, timestamp_ms=ms(NOW - TTL + 60))
    consumer.append_cancel(cancel(RIDS[2]), partition=2, timestamp_ms=ms(NOW - 5))
    watcher = make_watcher()
    await watcher.start()
    assert consumer.started
    assert watcher.cancelled(RIDS[0]) is None  # written before the lookback
    assert watcher.cancelled(RIDS[1]) is not None
    assert watcher.cancelled(RIDS[2]) is not None
    assert watcher.health()[0]


async def test_a_cancel_written_while_following_sets_its_watch(
    consumer: FakeCancelConsumer, make_watcher: Callable[[], CancelWatcher]
) -> None:
    watcher = make_watcher()
    await watcher.start()
    with watcher.watching(RIDS[3]) as event:
        consumer.append_cancel(cancel(RIDS[3], reason="stop"), partition=1, timestamp_ms=ms(NOW))
        async with asyncio.timeout(1.0):
            await event.wait()
    found = watcher.cancelled(RIDS[3])
    assert found is not None
    assert found.message == "request cancelled by alice: stop"


@pytest.mark.parametrize(
    ("value", "problem", "request_id"),
    [
        (b"{not json", "is not valid JSON", None),
        (None, "is empty", None),
        (b'{"schema": "fleetrun.cancel/2"}', "unsupported schema version", None),
        (
            b'{"schema": "fleetrun.cancel/1", "request_id": "%s",'
            b' "submitted_at": "2024-05-01T12:00:00Z"}' % RIDS[11].encode(),
            "principal: is required",
            RIDS[11],
        ),
    ],
)
async def test_a_bad_record_is_dead_lettered_and_reading_goes_on(
    consumer: FakeCancelConsumer,
    publisher: FakePublisher,
    make_watcher: Callable[[], CancelWatcher],
    value: bytes | None,
    problem: str,
    request_id: str | None,
) -> None:
    consumer.append(value, partition=1, timestamp_ms=ms(NOW - 10))  # read back at start
    watcher = make_watcher()
    await watcher.start()
    bad = consumer.append(value, partition=2, timestamp_ms=ms(NOW))  # read while following
    consumer.append_cancel(cancel(RIDS[4]), partition=2, timestamp_ms=ms(NOW))
    await wait_until(lambda: watcher.cancelled(RIDS[4]) is not None)
    await wait_until(lambda: len(publisher.dead_letters(DLQ)) == 2)
    letter = publisher.dead_letters(DLQ)[1]
    assert (letter.source_topic, letter.partition, letter.offset) == (consumer.topic, 2, 0)
    assert (letter.key, letter.value) == (bad.key, bad.value)
    assert (letter.stage, letter.instance, letter.error.type) == (
        "collector",
        "collector-a",
        "SchemaError",
    )
    assert problem in letter.error.message
    assert letter.request_id == request_id
    assert watcher.health()[0]


async def test_a_refusing_dead_letter_topic_does_not_stop_the_watcher(
    consumer: FakeCancelConsumer,
    publisher: FakePublisher,
    make_watcher: Callable[[], CancelWatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher.refuse = {DLQ: CollectorError("DLQ gone", retriable=False)}
    watcher = make_watcher()
    await watcher.start()
    with caplog.at_level(logging.ERROR, logger="fleetrun.collector.cancels"):
        consumer.append(b"garbage", timestamp_ms=ms(NOW))
        await wait_until(lambda: "cancel record not dead-lettered" in caplog.text)
    consumer.append_cancel(cancel(RIDS[5]), timestamp_ms=ms(NOW))
    await wait_until(lambda: watcher.cancelled(RIDS[5]) is not None)


async def test_kafka_failures_while_following_are_retried(
    consumer: FakeCancelConsumer,
    make_watcher: Callable[[], CancelWatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = make_watcher()
    await watcher.start()
    consumer.fail_polls = 2
    with caplog.at_level(logging.WARNING, logger="fleetrun.collector.cancels"):
        consumer.append_cancel(cancel(RIDS[6]), timestamp_ms=ms(NOW))
        await wait_until(lambda: watcher.cancelled(RIDS[6]) is not None, timeout_s=5.0)
    assert consumer.fail_polls == 0
    assert caplog.text.count("reading cancels failed; retrying") == 2


async def test_partitions_added_later_are_read_from_their_beginning(
    consumer: FakeCancelConsumer,
    make_watcher: Callable[[], CancelWatcher],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancels_module, "_PARTITIONS_EVERY_S", 0.0)
    consumer.append_cancel(cancel(RIDS[7]), partition=0, timestamp_ms=ms(NOW))
    watcher = make_watcher()
    await watcher.start()
    new = consumer.add_partition()
    consumer.append_cancel(cancel(RIDS[8]), partition=new, timestamp_ms=ms(NOW))
    await wait_until(lambda: watcher.cancelled(RIDS[8]) is not None)
    consumer.append_cancel(cancel(RIDS[9]), partition=0, timestamp_ms=ms(NOW))
    await wait_until(lambda: watcher.cancelled(RIDS[9]) is not None)
    assert consumer.positions[next(tp for tp in consumer.positions if tp.partition == 0)] == 2


async def test_a_missing_topic_is_a_clear_error_and_the_consumer_is_closed(
    consumer: FakeCancelConsumer, publisher: FakePublisher
) -> None:
    watcher = CancelWatcher(
        consumer,
        topic="t.other",
        dlq_topic=DLQ,
        publisher=publisher,
        collector="c",
        lookback_s=TTL,
        max_entries=10,
    )
    with pytest.raises(CollectorError, match=r"cancels topic t\.other does not exist"):
        await watcher.start()
    assert consumer.stopped
    assert not watcher.health()[0]


async def test_stop_closes_the_consumer_and_the_health_says_so(
    consumer: FakeCancelConsumer, make_watcher: Callable[[], CancelWatcher]
) -> None:
    watcher = make_watcher()
    await watcher.start()
    ok, details = watcher.health()
    assert ok
    assert details["cancel_watcher_running"]
    await watcher.stop()
    assert consumer.stopped
    assert watcher.health() == (
        False,
        {"cancel_watcher_running": False, "cancels_known": 0, "cancels_watched": 0},
    )


def test_a_cancel_record_names_the_request_it_cancels() -> None:
    # The watcher trusts the value's request_id, not the key (every collector reads every
    # partition, so a producer keying differently changes nothing).
    raw = schemas.encode(cancel(RIDS[10]))
    assert schemas.peek_request_id(raw) == RIDS[10]
