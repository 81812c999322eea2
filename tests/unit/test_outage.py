"""The outage tracker and the library-noise filter: how many lines N failures make over time.

Time is simulated: the tracker reads an injected clock, nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

from fleetrun.runtime import logs
from fleetrun.runtime.logs import LIBRARY_NOISE, says_unreachable
from fleetrun.runtime.outage import NoiseFilter, Outages, watch

T0_WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    """Monotonic and wall-clock time that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return T0_WALL + self.now - 1000.0


class Lines(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.Logger(name)  # not registered: no state shared with other tests
    logger.addHandler(handler)
    return logger


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def outages(clock: Clock, lines: Lines) -> Outages:
    return Outages(clock=clock, wall=clock.wall, logger=_logger("fleetrun.outage", lines))


def _fail_for(outages: Outages, clock: Clock, seconds: float, every_s: float) -> int:
    """Report a failed retry every `every_s` for `seconds`; how many were reported."""
    n = 0
    end = clock.now + seconds
    while clock.now < end:
        outages.failed("kafka", "KafkaConnectionError: refused", what="publish_retries")
        n += 1
        clock.now += every_s
    return n


@pytest.mark.parametrize(
    ("down_s", "summaries"),
    [(1, 0), (29.9, 0), (30.05, 1), (59, 1), (95, 3), (600, 19)],
)
def test_an_outage_is_one_line_down_a_summary_per_30s_and_one_line_back(
    outages: Outages, clock: Clock, lines: Lines, down_s: float, summaries: int
) -> None:
    retries = _fail_for(outages, clock, down_s, every_s=0.1)
    outages.ok("kafka")
    assert lines.messages == [
        "kafka unavailable",
        *["kafka still unavailable"] * summaries,
        "kafka available again",
    ]
    levels = [r.levelno for r in lines.records]
    assert levels == [logging.ERROR, *[logging.WARNING] * summaries, logging.INFO]
    back = lines.records[-1].__dict__
    assert back["dependency"] == "kafka"
    assert back["publish_retries"] == retries
    assert back["down_for_s"] == pytest.approx(retries * 0.1, abs=0.11)


def test_summaries_say_how_long_and_what_was_retried(
    outages: Outages, clock: Clock, lines: Lines
) -> None:
    _fail_for(outages, clock, 31, every_s=1)
    first, summary = lines.records
    assert first.__dict__["error"] == "KafkaConnectionError: refused"
    assert first.__dict__["publish_retries"] == 1
    assert summary.__dict__["down_for_s"] == 30.0
    assert summary.__dict__["publish_retries"] == 31  # the one at 30 s included
    assert summary.__dict__["error"] == "KafkaConnectionError: refused"


def test_the_line_that_opens_an_outage_carries_the_reporters_fields(
    outages: Outages, lines: Lines
) -> None:
    outages.failed("kafka", "refused", what="publish_retries", fields={"topic": "t.results"})
    outages.failed("kafka", "refused", what="publish_retries", fields={"topic": "t.status"})
    (line,) = lines.records
    assert line.__dict__["topic"] == "t.results"


def test_context_goes_on_summaries_and_recovery_and_may_fail_harmlessly(
    outages: Outages, clock: Clock, lines: Lines
) -> None:
    queued = {"inflight_requests": 3}
    outages.set_context(lambda: queued)
    _fail_for(outages, clock, 31, every_s=1)
    outages.set_context(lambda: 1 // 0)  # type: ignore[arg-type,return-value]
    outages.ok("kafka")
    first, summary, back = lines.records
    assert "inflight_requests" not in first.__dict__
    assert summary.__dict__["inflight_requests"] == 3
    assert "ZeroDivisionError" in back.__dict__["context_error"]


def test_each_dependency_is_tracked_on_its_own(
    outages: Outages, clock: Clock, lines: Lines
) -> None:
    outages.failed("database", "connection refused")
    outages.failed("kafka", "refused")
    clock.now += 5
    outages.ok("database")
    assert lines.messages == [
        "database unavailable",
        "kafka unavailable",
        "database available again",
    ]
    assert outages.is_down("kafka")
    assert not outages.is_down("database")


def test_a_flapping_dependency_is_counted_not_announced_each_time(
    outages: Outages, clock: Clock, lines: Lines
) -> None:
    # Down for 1 s, up for 1 s, for 2 minutes: 60 outages.
    for _ in range(60):
        outages.failed("kafka", "refused")
        clock.now += 1
        outages.ok("kafka")
        clock.now += 1
    assert lines.messages[:2] == ["kafka unavailable", "kafka available again"]
    unstable = lines.records[2:]
    assert [r.getMessage() for r in unstable] == ["kafka unstable"] * 3
    assert [r.__dict__["outages"] for r in unstable] == [15, 15, 15]
    assert unstable[0].__dict__["down_s"] == 15.0
    assert len(lines.records) <= 2 + 120 / 30


def test_a_relapse_that_lasts_gets_its_summary_and_its_recovery_line(
    outages: Outages, clock: Clock, lines: Lines
) -> None:
    outages.failed("kafka", "refused")
    clock.now += 1
    outages.ok("kafka")
    clock.now += 2
    _fail_for(outages, clock, 60, every_s=1)  # relapse: quiet until 30 s after the last line
    outages.ok("kafka")
    assert lines.messages == [
        "kafka unavailable",
        "kafka available again",
        "kafka still unavailable",
        "kafka still unavailable",
        "kafka available again",
    ]
    assert lines.records[2].__dict__["down_for_s"] == 28.0
    assert lines.records[-1].__dict__["down_for_s"] == 60.0


def test_health_names_the_dependency_and_since_when(outages: Outages, clock: Clock) -> None:
    assert outages.health(["kafka"]) == (
        False,
        {"dependencies": {"kafka": {"up": None, "since": None}}},
    )
    outages.ok("kafka")
    assert outages.health(["kafka"]) == (
        True,
        {"dependencies": {"kafka": {"up": True, "since": "2027-01-15T08:00:00.000Z"}}},
    )
    clock.now += 2.5
    outages.failed("kafka", "refused")
    clock.now += 12.25
    ok, doc = outages.health(["kafka"])
    assert not ok
    assert doc["dependencies"]["kafka"] == {
        "up": False,
        "since": "2027-01-15T08:00:02.500Z",
        "down_for_s": 12.2,
        "error": "refused",
    }


def test_the_last_report_wins(outages: Outages) -> None:
    outages.failed("database", "timeout")
    assert outages.is_down("database")
    outages.ok("database")
    assert not outages.is_down("database")
    assert outages.state("database").up is True


# -- library noise ------------------------------------------------------------------------------


@pytest.fixture
def library(outages: Outages, lines: Lines) -> logging.Logger:
    """A handler with the service's noise filter; loggers named like the libraries' own."""
    lines.addFilter(NoiseFilter(outages, LIBRARY_NOISE))
    return _logger("root", lines)


def _emit(root: logging.Logger, name: str, level: int, msg: str, *args: object) -> None:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    root.handle(record)


def test_a_librarys_retry_errors_are_one_line_and_a_count(
    outages: Outages, clock: Clock, lines: Lines, library: logging.Logger
) -> None:
    # aiokafka during a 21 s outage: an ERROR per failed connection attempt, in several words.
    for i in range(1_000):
        err = KafkaConnectionError(f"Connection at 127.0.0.1:9092 closed ({i})")
        _emit(library, "aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 1, err)
        _emit(library, "aiokafka", logging.ERROR, "Unable to update metadata from %s", [1])
        _emit(
            library,
            "aiokafka.consumer.group_coordinator",
            logging.ERROR,
            "Heartbeat send request failed: %s. Will retry.",
            NodeNotReadyError("node 1"),
        )
        _emit(library, "aiokafka.consumer.group_coordinator", logging.WARNING,
              "Marking the coordinator dead (node %s)for group %s.", 1, "g")  # fmt: skip
        clock.now += 0.021
    outages.ok("kafka")
    assert lines.messages == [
        "kafka unavailable",
        "Unable connect to node with id 1: KafkaConnectionError: Connection at 127.0.0.1:9092 "
        "closed (0)",
        "Marking the coordinator dead (node 1)for group g.",
        "kafka available again",
    ]
    assert lines.records[-1].__dict__["aiokafka_lines_folded"] == 4_000 - 2


def test_records_that_are_not_an_outage_always_pass(
    outages: Outages, lines: Lines, library: logging.Logger
) -> None:
    for _ in range(3):
        _emit(
            library,
            "aiokafka.cluster",
            logging.ERROR,
            "Topic %s not found in cluster metadata",
            "t",
        )
        _emit(library, "fleetrun.collector", logging.WARNING, "poll failed")
        _emit(library, "asyncssh", logging.WARNING, "Connection lost: %s", OSError("reset"))
    assert len(lines.records) == 9
    assert not outages.is_down("kafka")
    assert not outages.is_down("database")


def test_during_an_outage_the_first_of_each_kind_passes(
    outages: Outages, lines: Lines, library: logging.Logger
) -> None:
    outages.failed("kafka", "refused")  # a probe noticed first
    for _ in range(5):
        _emit(
            library,
            "aiokafka.cluster",
            logging.ERROR,
            "Topic %s not found in cluster metadata",
            "t",
        )
        _emit(library, "aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 1,
              OSError(111, "Connection refused"))  # fmt: skip
        _emit(library, "asyncpg.pool", logging.WARNING, "Failed to restore the pool connection")
    assert lines.messages == [
        "kafka unavailable",
        "Topic t not found in cluster metadata",
        "Unable connect to node with id 1: [Errno 111] Connection refused",
        *["Failed to restore the pool connection"] * 5,  # the database is not down
    ]


def test_a_new_outage_shows_the_first_lines_again(
    outages: Outages, clock: Clock, lines: Lines, library: logging.Logger
) -> None:
    for _ in range(2):
        for _ in range(10):
            _emit(library, "aiokafka", logging.ERROR, "Unable to update metadata from %s", [1])
        clock.now += 31
        outages.ok("kafka")
        clock.now += 31
    assert (
        lines.messages
        == [
            "kafka unavailable",
            "Unable to update metadata from [1]",
            "kafka available again",
        ]
        * 2
    )


@pytest.mark.parametrize(
    ("msg", "args", "exc", "unreachable"),
    [
        ("Unable connect to node with id %s: %s", (1, KafkaConnectionError("closed")), None, True),
        ('Unable connect to "%s:%s": %s', ("h", 9092, ConnectionRefusedError(111, "refused")), None,
         True),
        ("Failed fetch messages from %s: %s", (1, NodeNotReadyError("node 1")), None, True),
        ("Heartbeat failed: %r", (TimeoutError(),), None, True),
        ("Unable to update metadata from %s", ([1],), None, True),
        ("Unexpected error in fetcher routine", (), asyncpg.ConnectionDoesNotExistError("gone"),
         True),
        ("Topic %s not found in cluster metadata", ("t",), None, False),
        ("Unexpected error in fetcher routine", (), ValueError("a bug"), False),
        ("OffsetCommit failed before join, ignoring: %s", (KeyError("x"),), None, False),
    ],
)  # fmt: skip
def test_which_library_records_say_the_server_is_unreachable(
    msg: str, args: tuple[object, ...], exc: BaseException | None, unreachable: bool
) -> None:
    exc_info = (type(exc), exc, None) if exc else None
    record = logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, args, exc_info)
    assert says_unreachable(record) is unreachable


def test_setup_installs_the_filter_on_the_services_handler() -> None:
    root = logging.getLogger()
    touched = [root, *(logging.getLogger(n) for n in ("aiokafka", "asyncssh", "kafka"))]
    saved, levels = root.handlers[:], [logger.level for logger in touched]
    try:
        logs.setup("INFO", "text")
        (handler,) = root.handlers
        assert any(isinstance(f, NoiseFilter) for f in handler.filters)
    finally:
        root.handlers[:] = saved
        for logger, level in zip(touched, levels, strict=True):
            logger.setLevel(level)


# -- probes ---------------------------------------------------------------------------------------


async def test_watch_reports_each_probe_and_deadlines(lines: Lines) -> None:
    outages = Outages(logger=_logger("fleetrun.outage", lines))
    answers: list[BaseException | None] = [ConnectionRefusedError(111, "refused")] * 3 + [None]
    hung, after_hang = asyncio.Event(), asyncio.Event()

    async def check() -> None:
        answer = answers.pop(0) if answers else None
        if answer is not None:
            raise answer
        if hung.is_set():
            after_hang.set()  # the hang has been reported by now
        elif outages.state("kafka").up:
            hung.set()
            await asyncio.Event().wait()  # never answers: the deadline must report it

    task = asyncio.create_task(watch(outages, "kafka", check, interval_s=0.001, timeout_s=0.05))
    try:
        async with asyncio.timeout(10):
            await after_hang.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert outages.state("kafka").error == "no answer within 0.05 s"
    # Down, back, and the hang: a relapse within 30 s, counted rather than announced.
    assert lines.messages == ["kafka unavailable", "kafka available again"]
    assert lines.records[0].__dict__["error"] == "ConnectionRefusedError: [Errno 111] refused"
