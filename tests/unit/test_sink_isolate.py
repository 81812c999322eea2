"""Splitting a batch to isolate records the database refuses (sink/isolate.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sink.isolate import isolate


class Poison(Exception):
    pass


class Down(Exception):
    pass


def _is_poison(exc: BaseException) -> bool:
    return isinstance(exc, Poison)


class FakeTable:
    """Stores groups atomically; refuses any group holding a poison item."""

    def __init__(self, poison: set[int]) -> None:
        self.poison = poison
        self.stored: Counter[int] = Counter()
        self.attempts = 0

    async def attempt(self, group: Sequence[int]) -> None:
        self.attempts += 1
        bad = self.poison.intersection(group)
        if bad:
            raise Poison(f"bad value {min(bad)}")
        self.stored.update(group)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(0, 200))
async def test_every_good_item_is_stored_once_and_every_poison_item_is_named(
    data: st.DataObject, n: int
) -> None:
    poison = set(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=6))) if n else set()
    table = FakeTable(poison)
    refused = await isolate(list(range(n)), table.attempt, _is_poison)
    assert sorted(item for item, _ in refused) == sorted(poison)
    assert all(isinstance(exc, Poison) for _, exc in refused)
    assert table.stored == Counter(i for i in range(n) if i not in poison)
    if not poison:
        assert table.attempts == (1 if n else 0)


async def test_stored_groups_keep_the_batch_order() -> None:
    table = FakeTable({3})
    order: list[int] = []

    async def attempt(group: Sequence[int]) -> None:
        await table.attempt(group)
        order.extend(group)

    await isolate(list(range(8)), attempt, _is_poison)
    assert order == [0, 1, 2, 4, 5, 6, 7]


async def test_an_outage_is_not_poison_and_stops_the_split() -> None:
    calls = 0

    async def attempt(group: Sequence[int]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Poison("x")
        raise Down("connection lost")

    with pytest.raises(Down):
        await isolate([1, 2, 3, 4], attempt, _is_poison)
    assert calls == 2
