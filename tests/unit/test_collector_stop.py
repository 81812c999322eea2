"""collector.stop.Stop, and how a stopped command becomes an outcome (collector.outcome)."""

from __future__ import annotations

import asyncio

import pytest

from collector.capture import StreamCapture
from collector.command import Finished
from collector.outcome import KILLED, NOT_STARTED, command_outcome, not_started
from collector.stop import Stop


def test_the_first_reason_wins_and_a_blank_one_is_named() -> None:
    stop = Stop()
    assert (stop.is_set(), stop.reason) == (False, None)
    stop.set("request cancelled by alice")
    stop.set("collector shutting down")
    assert (stop.is_set(), stop.reason) == (True, "request cancelled by alice")
    blank = Stop()
    blank.set("  ")
    assert blank.reason == "stopped"


def test_set_wakes_every_attached_event_and_only_those() -> None:
    stop = Stop()
    a, b, gone = asyncio.Event(), asyncio.Event(), asyncio.Event()
    for event in (a, b, gone):
        stop.attach(event)
    stop.detach(gone)
    assert not a.is_set()
    stop.set("why")
    assert (a.is_set(), b.is_set(), gone.is_set()) == (True, True, False)


def test_attaching_after_set_wakes_at_once() -> None:
    stop = Stop()
    stop.set("why")
    late = asyncio.Event()
    stop.attach(late)
    assert late.is_set()


async def test_sleep_ends_early_when_set() -> None:
    stop = Stop()
    asyncio.get_running_loop().call_soon(stop.set, "why")
    async with asyncio.timeout(5):
        assert await stop.sleep(60) is True


async def test_sleep_runs_out_when_not_set() -> None:
    stop = Stop()
    assert await stop.sleep(0.01) is False


def _finished(*, timed_out: bool = False, stop_reason: str | None = None) -> Finished:
    out = StreamCapture(100)
    out.feed(b"started\n")
    return Finished(
        exit_status=None,
        exit_signal="TERM",
        stdout=out.result(),
        stderr=StreamCapture(100).result(),
        timed_out=timed_out,
        stop_reason=stop_reason,
        kill_note="sent TERM to the process group: the command ended",
        lost=None,
        wedged=False,
    )


def test_a_stopped_command_is_an_error_of_type_killed() -> None:
    outcome = command_outcome(_finished(stop_reason="request cancelled by alice"), 10)
    assert outcome.status == "error"
    assert outcome.error is not None
    assert outcome.error.type == KILLED == "killed"
    assert outcome.error.message == (
        "killed: request cancelled by alice; sent TERM to the process group: the command ended"
    )
    assert outcome.finished is not None
    assert outcome.finished.exit_signal == "TERM"


def test_without_a_stop_a_signal_is_a_failure_and_a_timeout_stays_a_timeout() -> None:
    assert command_outcome(_finished(), 10).status == "failed"
    timed_out = command_outcome(_finished(timed_out=True), 10)
    assert timed_out.status == "timeout"
    assert timed_out.error is not None
    assert timed_out.error.type == "CommandTimeout"


@pytest.mark.parametrize("reason", ["collector shutting down", "x" * 10_000])
def test_not_started_is_skipped_with_the_reason(reason: str) -> None:
    outcome = not_started(reason)
    assert (outcome.status, outcome.retry, outcome.finished) == ("skipped", False, None)
    assert outcome.error is not None
    assert outcome.error.type == NOT_STARTED == "not_started"
    assert outcome.error.message.startswith("not started: " + reason[:100])
