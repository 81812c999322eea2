"""Per-partition batching: thresholds, offsets, epochs, memory pressure (sink/batch.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sink.batch import Batch, Batcher, BatchLimits

LIMITS = BatchLimits(max_rows=3, max_bytes=100, linger_s=1.0, max_buffer_bytes=1_000)


def batcher(limits: BatchLimits = LIMITS, parts: tuple[str, ...] = ("a", "b")) -> Batcher[str, int]:
    b: Batcher[str, int] = Batcher(limits)
    b.assign(parts)
    return b


@pytest.mark.parametrize(
    ("records", "now", "due"),
    [
        ([], 0.0, []),
        ([(0, 10)], 0.5, []),  # one small record, linger not over
        ([(0, 10)], 1.0, ["a"]),  # linger over
        ([(0, 10), (1, 10), (2, 10)], 0.0, ["a"]),  # max_rows
        ([(0, 60), (1, 40)], 0.0, ["a"]),  # max_bytes
        ([(0, 60), (1, 39)], 0.0, []),
    ],
)
def test_a_batch_is_due_by_rows_bytes_or_age(
    records: list[tuple[int, int]], now: float, due: list[str]
) -> None:
    b = batcher()
    for offset, size in records:
        b.add("a", offset, offset, size, now=0.0)
    assert b.due(now) == due


def test_a_partition_that_caught_up_is_due_at_once_until_more_arrives() -> None:
    b = batcher()
    b.add("a", 0, 0, 10, now=0.0)
    b.add("b", 0, 0, 10, now=0.0)
    assert not b.due(0.0)
    assert b.lingering()
    b.caught_up(fetched=["b"])  # the poll returned records of b only: a has caught up
    assert b.due(0.0) == ["a"]
    b.add("a", 1, 1, 10, now=0.0)  # more came: a lingers again
    assert b.due(0.0) == []
    b.caught_up(fetched=[])
    assert b.due(0.0) == ["a", "b"]
    assert not b.lingering()
    # A caught-up partition whose batch is being written waits for it (one at a time).
    batch = b.take("a")
    b.add("a", 2, 2, 10, now=0.0)
    b.caught_up(fetched=[])
    assert b.due(0.0) == ["b"]
    b.done(batch)
    assert b.due(0.0) == ["a", "b"]


def test_memory_pressure_makes_the_biggest_batches_due_first() -> None:
    b = batcher(BatchLimits(max_rows=100, max_bytes=1_000, linger_s=60, max_buffer_bytes=100))
    b.add("a", 0, 0, 30, now=0)
    b.add("b", 0, 0, 50, now=0)
    assert b.due(0) == []
    b.add("a", 1, 1, 30, now=0)  # 110 bytes buffered: over the cap
    assert b.due(0) == ["a", "b"]
    assert b.to_pause() == {"a", "b"}


def test_take_respects_rows_and_bytes_and_gives_the_next_offset_to_read() -> None:
    b = batcher()
    for offset in (5, 6, 9, 10):  # gaps are normal (compaction, transaction markers)
        b.add("a", offset, offset, 10, now=0)
    batch = b.take("a")
    assert (batch.items, batch.first_offset, batch.commit_offset) == ([5, 6, 9], 5, 10)
    assert b.inflight("a")
    assert b.due(5) == []  # one batch per partition at a time
    assert b.done(batch) == 10
    assert b.take("a").items == [10]


def test_a_single_record_bigger_than_max_bytes_still_makes_a_batch() -> None:
    b = batcher()
    b.add("a", 0, 0, 500, now=0)
    b.add("a", 1, 1, 1, now=0)
    assert b.take("a").items == [0]


def test_revoked_partitions_drop_pending_records_and_never_commit() -> None:
    b = batcher()
    b.add("a", 0, 0, 10, now=0)
    b.add("a", 1, 1, 10, now=0)
    batch = b.take("a")
    b.add("a", 2, 2, 10, now=0)
    assert b.revoke(["a"]) == 1
    assert b.done(batch) is None
    assert not b.add("a", 3, 3, 10, now=0)  # not ours any more
    assert b.buffered_bytes == 0


def test_a_batch_from_an_earlier_assignment_commits_nothing() -> None:
    b = batcher()
    b.add("a", 0, 0, 10, now=0)
    old = b.take("a")
    b.revoke(["a"])
    b.assign(["a"])  # the group gave it back: a new epoch, read again from the commit
    b.add("a", 0, 0, 10, now=0)
    new = b.take("a")  # the old batch is not "in flight" for the new epoch
    assert b.done(old) is None
    assert b.done(new) == 1


def test_a_rewind_restarts_the_pending_buffer_so_no_offset_is_skipped() -> None:
    b = batcher(BatchLimits(max_rows=10, max_bytes=1_000, linger_s=1, max_buffer_bytes=10_000))
    for offset in (10, 11, 12):
        b.add("a", offset, offset, 10, now=0)
    b.add("a", 4, 4, 10, now=0)  # the consumer was seeked back
    assert b.take("a").items == [4]
    assert b.buffered_bytes == 10


def test_full_partitions_are_paused_and_the_linger_deadline_is_known() -> None:
    b = batcher()
    assert b.next_deadline() is None
    b.add("b", 0, 0, 10, now=2.0)
    for offset in range(3):
        b.add("a", offset, offset, 10, now=1.0)
    assert b.to_pause() == {"a"}
    assert b.next_deadline() == 2.0  # a's linger started at 1.0
    b.take("a")
    assert b.to_pause() == set()
    assert b.next_deadline() == 3.0


def test_abandoned_batches_free_their_bytes() -> None:
    b = batcher()
    b.add("a", 0, 0, 40, now=0)
    batch = b.take("a")
    assert b.buffered_bytes == 40
    b.abandon(batch)
    assert b.buffered_bytes == 0
    assert not b.inflight("a")


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="positive"):
        BatchLimits(max_rows=0, max_bytes=1, linger_s=0, max_buffer_bytes=1)


# A model of one partition across flushes and rebalances: whatever the interleaving, an offset
# is committed only when every record below it was stored.
_ACTIONS = st.lists(
    st.sampled_from(["add", "add", "add", "gap", "take", "done", "rebalance"]), max_size=80
)


@settings(max_examples=300, deadline=None)
@given(actions=_ACTIONS, max_rows=st.integers(1, 5))
def test_committed_offsets_never_pass_an_unstored_record(actions: list[str], max_rows: int) -> None:
    limits = BatchLimits(max_rows=max_rows, max_bytes=10_000, linger_s=0, max_buffer_bytes=10**6)
    b: Batcher[str, int] = Batcher(limits)
    b.assign(["p"])
    produced = 0  # the log: offsets 0..produced-1 exist (some skipped by "gap")
    existing: list[int] = []
    position = 0  # next offset the consumer reads
    committed = 0
    stored: set[int] = set()
    inflight: Batch[str, int] | None = None
    for action in actions:
        if action in ("add", "gap"):
            if action == "gap":
                produced += 1  # an offset with no record (compaction, markers)
            existing.append(produced)
            produced += 1
            for offset in [o for o in existing if o >= position]:
                b.add("p", offset, offset, 1, now=0)
                position = offset + 1
        elif action == "take" and inflight is None and b.due(0):
            inflight = b.take("p")
        elif action == "done" and inflight is not None:
            stored.update(inflight.items)
            done = b.done(inflight)
            inflight = None
            if done is not None:
                committed = done  # may move back after a rebalance: that only re-reads
                assert all(o in stored for o in existing if o < committed)
        elif action == "rebalance":
            b.revoke(["p"])
            b.assign(["p"])
            position = committed  # the new owner starts from the committed offset
            if inflight is not None:
                stored.update(inflight.items)  # it may still finish; its commit is void
                assert b.done(inflight) is None
                inflight = None


def test_a_flush_takes_other_partitions_along_up_to_the_limits() -> None:
    limits = BatchLimits(max_rows=5, max_bytes=1_000, linger_s=1.0, max_buffer_bytes=10_000)
    b2 = batcher(limits, parts=("a", "b", "c"))
    for offset in range(3):
        b2.add("a", offset, offset, 10, now=0.0)  # due by age at 1.0
    b2.add("b", 7, 7, 30, now=0.9)
    b2.add("c", 1, 1, 20, now=0.9)
    b2.add("c", 2, 2, 20, now=0.9)
    assert b2.next_flush(0.5) == []  # nothing due yet
    flush = b2.next_flush(1.0)
    # a is due; c (40 bytes) and b (30 bytes) ride along, biggest first, up to 5 rows in all.
    assert [(x.partition, x.items) for x in flush] == [("a", [0, 1, 2]), ("c", [1, 2])]
    assert [b2.inflight(k) for k in "abc"] == [True, False, True]
    assert b2.next_flush(1.0) == []  # b is not due on its own yet
    assert [(x.partition, x.items) for x in b2.next_flush(1.0, force=True)] == [("b", [7])]


def _state(b: Batcher[str, int]) -> tuple[object, ...]:
    parts = [(k, p.items, p.offsets, p.sizes, p.nbytes, p.first_at, p.next_offset)
             for k, p in sorted(b._parts.items())]  # fmt: skip
    return (parts, b.buffered_bytes, b.next_deadline(), b.to_pause(), b.due(10.0))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "gone"]),
            st.integers(0, 30),  # where the run starts: below the last offset is a rewind
            st.lists(st.tuples(st.integers(1, 3), st.integers(1, 40)), max_size=6),
            st.floats(0, 5),
        ),
        max_size=8,
    )
)
def test_extend_is_add_for_each_record_of_an_ascending_run(
    runs: list[tuple[str, int, list[tuple[int, int]], float]],
) -> None:
    one, many = batcher(), batcher()
    for key, start, steps, now in runs:
        offsets, sizes, offset = [], [], start
        for step, size in steps:
            offsets.append(offset)
            sizes.append(size)
            offset += step  # ascending, with gaps
        kept = [one.add(key, o, o, n, now) for o, n in zip(offsets, sizes, strict=True)]
        assert many.extend(key, offsets, list(offsets), sizes, now) == (key != "gone")
        assert all(k == (key != "gone") for k in kept)
        assert _state(one) == _state(many)
