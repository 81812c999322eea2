"""The web console's live fan-out: one feed, a bounded queue per open page, reload when slow."""

from __future__ import annotations

import base64

import pytest

from fleetrun.cli.web.live import (
    RELOAD,
    Event,
    Hub,
    OutputEvents,
    result_event,
    status_event,
)
from schemas import Output, Status, encode
from tests.support.records import RID, make_counts, make_result


def _event(n: int) -> Event:
    return Event("result", {"n": n})


async def test_events_reach_every_page_of_their_request_only() -> None:
    hub = Hub(queue_size=10)
    a, b = hub.subscribe(RID), hub.subscribe(RID)
    other = hub.subscribe("another")
    hub.publish(RID, _event(1))
    assert a.queue.get_nowait() == b.queue.get_nowait() == _event(1)
    assert other.queue.empty()
    assert hub.subscribers == 3


async def test_a_slow_page_is_bounded_and_told_to_reload() -> None:
    overflows: list[int] = []
    hub = Hub(queue_size=3, on_overflow=lambda: overflows.append(1))
    slow, fast = hub.subscribe(RID), hub.subscribe(RID)
    for n in range(3):
        hub.publish(RID, _event(n))
        fast.queue.get_nowait()
    hub.publish(RID, _event(3))  # the slow page's queue is full now
    for n in range(4, 100):
        hub.publish(RID, _event(n))
        fast.queue.get_nowait()
    assert slow.queue.qsize() == 1
    assert slow.queue.get_nowait() == RELOAD
    assert slow.overflowed
    assert overflows == [1]  # counted once, not once per event it missed


async def test_pages_that_close_are_forgotten() -> None:
    hub = Hub(queue_size=1)
    sub = hub.subscribe(RID)
    assert hub.watched(RID)
    hub.unsubscribe(sub)
    assert not hub.watched(RID)
    hub.publish(RID, _event(1))  # nobody to give it to: nothing is kept
    assert hub.subscribers == 0


async def test_a_page_opened_late_starts_from_the_latest_status() -> None:
    hub = Hub(queue_size=10, keep_statuses=2)
    hub.status(RID, Event("status", {"state": "accepted"}))
    hub.status(RID, Event("status", {"state": "completed"}))
    late = hub.subscribe(RID)
    assert late.queue.get_nowait() == Event("status", {"state": "completed"})
    assert late.queue.empty()
    hub.status("b", Event("status", {"state": "accepted"}))
    hub.status("c", Event("status", {"state": "accepted"}))  # RID is the oldest: forgotten
    assert hub.subscribe(RID).queue.empty()
    assert hub.subscribe("c").queue.qsize() == 1


def test_event_stream_format() -> None:
    assert _event(7).encode() == b'event: result\ndata: {"n":7}\n\n'


@pytest.mark.parametrize("status", ["ok", "failed"])
def test_results_become_what_the_page_shows(status: str) -> None:
    result = make_result(status=status, duration_ms=42)  # type: ignore[arg-type]
    event = result_event(encode(result))
    assert event.kind == "result"
    assert event.data["host"] == "web01"
    assert event.data["status"] == status
    assert event.data["duration_ms"] == 42
    assert event.data["reason"] == (None if status == "ok" else "exit status 1")


def test_a_completed_status_carries_its_counts() -> None:
    status = Status.completed(RID, make_counts(ok=2, failed=1), duration_ms=5, collector="c")
    event = status_event(encode(status))
    assert event.data["state"] == "completed"
    assert event.data["targets_total"] == 3
    assert event.data["counts"]["failed"] == 1


def _chunk(data: bytes, offset: int, *, host: str = "web01", eos: bool = False) -> bytes:
    return encode(
        Output(
            request_id=RID,
            host=host,
            attempt=1,
            stream="stdout",
            sequence=0,
            offset=offset,
            data=base64.b64encode(data).decode(),
            encoding="base64",
            eos=eos,
            at="2024-05-01T12:00:00Z",
        )
    )


def _texts(events: OutputEvents, *chunks: bytes) -> list[str]:
    return [events(chunk).data["text"] for chunk in chunks]


def test_a_character_cut_between_chunks_shows_whole() -> None:
    text = "température ✓\n".encode()
    cut = text.index("é".encode()) + 1  # inside the two bytes of é
    tick = text.index("✓".encode()) + 2  # inside the three bytes of ✓
    shown = _texts(
        OutputEvents(),
        _chunk(text[:cut], 0),
        _chunk(text[cut:tick], cut),
        _chunk(text[tick:], tick, eos=True),
    )
    assert "".join(shown) == "température ✓\n"
    assert "\ufffd" not in "".join(shown)


def test_streams_keep_their_own_unfinished_character() -> None:
    e = "é".encode()
    events = OutputEvents()
    shown = _texts(
        events,
        _chunk(e[:1], 0, host="a"),
        _chunk(e[:1], 0, host="b"),
        _chunk(e[1:], 1, host="a"),
        _chunk(e[1:], 1, host="b"),
    )
    assert shown == ["", "", "é", "é"]


def test_a_stream_ending_mid_character_or_dropped_bytes_show_a_replacement() -> None:
    e = "é".encode()
    assert _texts(OutputEvents(), _chunk(b"ok " + e[:1], 0, eos=True)) == ["ok \ufffd"]
    # The live budget dropped bytes after the cut: the character cannot be finished.
    shown = _texts(OutputEvents(), _chunk(b"a" + e[:1], 0), _chunk(b"b\n", 50))
    assert shown == ["a", "\ufffdb\n"]
    assert _texts(OutputEvents(), _chunk(b"\xff\x1b[2J", 0)) == ["\ufffd\\x1b[2J"]


def test_remembered_streams_are_bounded() -> None:
    events = OutputEvents(keep=2)
    for host in ("a", "b", "c"):
        events(_chunk("é".encode()[:1], 0, host=host))
    # "a" was forgotten: its next chunk starts afresh (a lone continuation byte).
    assert _texts(events, _chunk("é".encode()[1:], 1, host="a")) == ["\ufffd"]
    assert _texts(events, _chunk("é".encode()[1:], 1, host="c")) == ["é"]
