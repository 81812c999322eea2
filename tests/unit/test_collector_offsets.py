"""OffsetTracker: the highest contiguous finished offset per partition, out-of-order finishes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.offsets import OffsetTracker

P0 = ("requests", 0)
P1 = ("requests", 1)


@pytest.mark.parametrize(
    ("started", "finished", "committable"),
    [
        ([5], [], 5),  # in flight: commit nothing past it
        ([5], [5], 6),  # done: next to read is 6
        ([5, 6, 7], [7], 5),  # out of order: 5 still blocks
        ([5, 6, 7], [7, 5], 6),
        ([5, 6, 7], [7, 5, 6], 8),
        ([5, 9, 12], [5], 9),  # gaps (transaction markers, compaction) are not waited for
        ([5, 9, 12], [5, 9, 12], 13),
        ([0], [0], 1),
    ],
)
def test_committable_is_lowest_unfinished_or_one_past_last(
    started: list[int], finished: list[int], committable: int
) -> None:
    t: OffsetTracker[tuple[str, int]] = OffsetTracker()
    for offset in started:
        assert t.start(P0, offset)
    for offset in finished:
        t.finish(P0, offset)
    assert t.committable(P0) == committable
    assert t.inflight(P0) == len(started) - len(finished)


def test_finish_reports_only_movement() -> None:
    t: OffsetTracker[tuple[str, int]] = OffsetTracker()
    for offset in (10, 11, 12):
        t.start(P0, offset)
    assert t.finish(P0, 12) is None  # 10 still in flight
    assert t.finish(P0, 10) == 11
    assert t.finish(P0, 11) == 13
    assert t.finish(P0, 11) is None  # twice: ignored


def test_partitions_are_independent_and_pending_tracks_commits() -> None:
    t: OffsetTracker[tuple[str, int]] = OffsetTracker()
    t.start(P0, 1)
    t.start(P1, 100)
    t.finish(P1, 100)
    assert t.pending() == {P0: 1, P1: 101}
    t.mark_committed({P0: 1, P1: 101})
    assert t.pending() == {}
    t.finish(P0, 1)
    assert t.pending() == {P0: 2}
    assert t.inflight() == 0


def test_redelivered_offsets_are_refused_within_an_assignment() -> None:
    t: OffsetTracker[tuple[str, int]] = OffsetTracker()
    assert t.start(P0, 3)
    assert not t.start(P0, 3)
    assert not t.start(P0, 2)
    assert t.start(P0, 4)


def test_revoke_forgets_and_reports_abandoned_work() -> None:
    t: OffsetTracker[tuple[str, int]] = OffsetTracker()
    for offset in (1, 2, 3):
        t.start(P0, offset)
    t.start(P1, 7)
    t.finish(P0, 2)
    assert t.revoke([P0]) == {P0: [1, 3]}
    assert t.committable(P0) is None
    assert t.finish(P0, 1) is None  # a late finish of revoked work commits nothing
    assert t.partitions() == [P1]
    # Reassigned later: the new owner's committed offset is where fetching starts again.
    assert t.start(P0, 1)
    assert t.committable(P0) == 1


def test_negative_offsets_are_a_bug() -> None:
    with pytest.raises(ValueError, match="negative"):
        OffsetTracker[int]().start(0, -1)


@given(
    gaps=st.lists(st.integers(1, 5), min_size=1, max_size=40),
    order=st.randoms(use_true_random=False),
    first=st.integers(0, 1000),
)
def test_property_never_commits_past_unfinished_work(
    gaps: list[int], order: st.SearchStrategy[object], first: int
) -> None:
    offsets, offset = [], first
    for gap in gaps:
        offsets.append(offset)
        offset += gap
    t: OffsetTracker[int] = OffsetTracker()
    for o in offsets:
        t.start(0, o)
    finishing = list(offsets)
    order.shuffle(finishing)  # type: ignore[attr-defined]
    unfinished = set(offsets)
    last = t.committable(0)
    for o in finishing:
        moved = t.finish(0, o)
        unfinished.discard(o)
        now = t.committable(0)
        assert now is not None
        assert last is not None
        expected = min(unfinished) if unfinished else offsets[-1] + 1
        assert now == expected  # exactly the lowest unfinished, never past it
        assert now >= last  # monotonic
        assert (moved is not None) == (now != last)
        last = now
    assert t.inflight() == 0
