"""The hosts of a fan-out, handed out in plan order with their `started` marks committed ahead.

Before a command starts on a host the ledger must hold its `started` mark, committed. Awaiting
one commit per host put a transaction's latency between every finishing host and the next one
starting (measured: 0.77x the rate without the ledger on warm connections). The window instead
commits the marks of the next hosts in one write while the current ones run: whenever fewer
than `ahead` hosts are marked and not yet taken and no write is under way, the marks of as many
as are missing go out together, so a worker that frees up usually finds its next host marked.

The price, written down in docs/DESIGN.md: a collector killed outright leaves up to `ahead` hosts
(the request's concurrency, collector.fanout) marked that never started, and the next
owner reports them `outcome_unknown`, as it must for any `started` host without a result. A
collector that stops in order releases the marks of the hosts it had not started (the handler
knows which), so the next owner runs them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class StartWindow(Generic[T]):
    """`next()` gives the items of `items` in order, each only once `reserve` has committed it.

    `reserve(batch)` is called with consecutive items that need a mark (those `needs_mark`
    accepts; the others pass through in their place without one). A failure of `reserve` is
    raised to every `next()` waiting for that batch and to every later one.
    """

    def __init__(
        self,
        items: Sequence[T],
        reserve: Callable[[list[T]], Awaitable[None]],
        *,
        ahead: int,
        needs_mark: Callable[[T], bool],
    ) -> None:
        self._items = items
        self._next = 0  # index of the first item not reserved yet
        self._reserve = reserve
        self._ahead = max(1, ahead)
        self._needs_mark = needs_mark
        self._ready: deque[T] = deque()
        self._refill: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def next(self) -> T | None:
        """The next item once reserved; None when there are no more."""
        while True:
            if self._failure is not None:
                raise self._failure
            self._start_refill()
            if self._ready:
                item = self._ready.popleft()
                self._start_refill()  # the next marks go out while this item runs
                return item
            if self._refill is None:
                return None
            await asyncio.shield(self._refill)

    def more(self) -> bool:
        """Whether items remain to be handed out."""
        return bool(self._ready) or self._refill is not None or self._next < len(self._items)

    async def close(self) -> None:
        """Wait for a reservation under way (its items count as reserved, not handed out)."""
        if self._refill is not None:
            await asyncio.gather(self._refill, return_exceptions=True)

    def _start_refill(self) -> None:
        if self._refill is not None or len(self._ready) >= self._ahead:
            return
        room = self._ahead - len(self._ready)
        batch = list(self._items[self._next : self._next + room])
        self._next += len(batch)
        if batch:
            self._refill = asyncio.create_task(self._commit(batch))
            # Its failure is raised to the workers through `_failure`; retrieved here so an
            # unawaited failure is not reported as lost.
            self._refill.add_done_callback(_retrieve)

    async def _commit(self, batch: list[T]) -> None:
        marked = [item for item in batch if self._needs_mark(item)]
        try:
            if marked:
                await self._reserve(marked)
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._refill = None
        self._ready.extend(batch)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
