"""Store what can be stored, isolating the records that can never be: pure, no database imports.

`attempt(items)` stores a group of items atomically (in the sink: a savepoint around COPY and
INSERT) or raises. When it raises an error that `is_poison` accepts, the group is split in two
and each half is tried again, down to single items; an item that fails alone is poison. Every
other item is stored exactly once, by exactly one successful attempt. Errors that are not
poison (the database went away) propagate at once: the caller retries the whole batch.

Cost: one attempt when nothing is wrong; about 2·k·log2(n) attempts for k poison items in n.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def isolate(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], Awaitable[object]],
    is_poison: Callable[[BaseException], bool],
) -> list[tuple[T, BaseException]]:
    """Store `items` through `attempt`; return the items that fail on their own, with why."""
    rejected: list[tuple[T, BaseException]] = []
    # An explicit stack instead of recursion: depth stays flat whatever the batch size, and
    # groups are tried left to right so stored rows keep the batch's order.
    stack: list[Sequence[T]] = [items] if items else []
    while stack:
        group = stack.pop()
        try:
            await attempt(group)
        except Exception as exc:
            if not is_poison(exc):
                raise
            if len(group) == 1:
                rejected.append((group[0], exc))
                continue
            middle = len(group) // 2
            stack.append(group[middle:])
            stack.append(group[:middle])
    return rejected
