"""The start window: hosts in plan order, their `started` marks committed a window ahead."""

from __future__ import annotations

import asyncio

import pytest

from collector.window import StartWindow


class Recorder:
    """A `reserve` that records its batches and can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: BaseException | None = None

    async def __call__(self, batch: list[int]) -> None:
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        self.batches.append(list(batch))


async def _drain(window: StartWindow[int]) -> list[int]:
    taken: list[int] = []
    while (item := await window.next()) is not None:
        taken.append(item)
    return taken


async def test_items_come_in_order_each_reserved_before_it_is_handed_out() -> None:
    reserve = Recorder()
    window = StartWindow(list(range(10)), reserve, ahead=3, needs_mark=lambda _: True)
    taken: list[int] = []
    while (item := await window.next()) is not None:
        assert any(item in batch for batch in reserve.batches)
        taken.append(item)
    assert taken == list(range(10))
    assert sorted(i for batch in reserve.batches for i in batch) == list(range(10))
    assert all(len(batch) <= 3 for batch in reserve.batches)
    assert not window.more()


async def test_never_more_than_ahead_reserved_and_not_taken() -> None:
    reserve = Recorder()
    window = StartWindow(list(range(50)), reserve, ahead=4, needs_mark=lambda _: True)
    taken = 0
    while (item := await window.next()) is not None:
        taken += 1
        reserved = sum(len(batch) for batch in reserve.batches)
        assert reserved - taken <= 4, item
        await asyncio.sleep(0)  # let a refill under way commit
    assert taken == 50


async def test_items_without_a_mark_pass_through_in_their_place() -> None:
    reserve = Recorder()
    window = StartWindow(list(range(6)), reserve, ahead=10, needs_mark=lambda i: i % 2 == 0)
    assert await _drain(window) == list(range(6))
    assert reserve.batches == [[0, 2, 4]]


async def test_a_failed_reservation_is_raised_to_every_taker_and_hands_out_nothing() -> None:
    reserve = Recorder()
    reserve.gate.clear()
    reserve.failure = RuntimeError("fenced")
    window = StartWindow(list(range(5)), reserve, ahead=2, needs_mark=lambda _: True)
    takers = [asyncio.create_task(window.next()) for _ in range(3)]
    await asyncio.sleep(0)
    reserve.gate.set()
    outcomes = await asyncio.gather(*takers, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    with pytest.raises(RuntimeError, match="fenced"):
        await window.next()
    assert reserve.batches == []
    assert window.more()  # the items were never handed out


async def test_close_waits_for_a_reservation_under_way() -> None:
    reserve = Recorder()
    window = StartWindow(list(range(4)), reserve, ahead=2, needs_mark=lambda _: True)
    assert await window.next() == 0
    reserve.gate.clear()
    assert await window.next() == 1  # the refill that follows is now held
    closing = asyncio.create_task(window.close())
    await asyncio.sleep(0)
    assert not closing.done()
    reserve.gate.set()
    await closing
    assert 2 in reserve.batches[-1]
