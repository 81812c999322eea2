"""Fair shares of the SSH session cap: deficit round robin between principals, then requests.

The collector's global cap on commands running at once (`max_sessions`) used to be one FIFO
semaphore: a request at concurrency 1,000 beside the cap queued a thousand waiters, and a
three-host request that came next waited behind all of them. Here a freed session goes to the
next principal in deficit round robin order (each principal's quantum is its weight from
`FLEETRUN_COLLECTOR_FAIR_SHARE_WEIGHTS`, default 1), and within a principal to its requests in
turn; a principal's waiters are served in their order. While the cap is not reached nobody
waits and nothing changes. Every session costs one unit, so DRR here serves up to `weight`
sessions of a principal per round before moving on.

asyncio has no weighted fair semaphore (aiolimiter is a rate limiter, asyncio.Semaphore is
FIFO), hence this small one. Pure asyncio: unit-tested without SSH.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Final

_DEFAULT_WEIGHT: Final = 1


@dataclass(slots=True)
class _Flow:
    weight: int
    deficit: int = 0
    requests: OrderedDict[str, deque[asyncio.Future[None]]] = field(default_factory=OrderedDict)

    def push(self, request_id: str, waiter: asyncio.Future[None]) -> None:
        self.requests.setdefault(request_id, deque()).append(waiter)

    def pop(self) -> asyncio.Future[None]:
        """The next waiter, its request moved to the back of the principal's turn."""
        request_id, waiters = next(iter(self.requests.items()))
        waiter = waiters.popleft()
        del self.requests[request_id]
        if waiters:
            self.requests[request_id] = waiters
        return waiter

    def discard(self, request_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self.requests.get(request_id)
        if waiters is not None:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters:
                del self.requests[request_id]

    def __bool__(self) -> bool:
        return bool(self.requests)


class FairSessions:
    """A counting semaphore whose waiters are served by weighted deficit round robin."""

    def __init__(self, capacity: int, weights: Mapping[str, int] | None = None) -> None:
        self.capacity = max(1, capacity)
        self.weights = {k: max(1, int(v)) for k, v in (weights or {}).items()}
        self._free = self.capacity
        self._flows: dict[str, _Flow] = {}
        self._active: deque[str] = deque()  # principals with waiters, in round robin order

    @property
    def waiting(self) -> int:
        return sum(len(w) for f in self._flows.values() for w in f.requests.values())

    @property
    def in_use(self) -> int:
        return self.capacity - self._free

    @contextlib.asynccontextmanager
    async def slot(self, principal: str, request_id: str) -> AsyncIterator[None]:
        """Hold one session of the cap for `principal`'s request while inside the block."""
        await self.acquire(principal, request_id)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, principal: str, request_id: str) -> None:
        if self._free > 0 and not self._active:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        flow = self._flows.get(principal)
        if flow is None:
            flow = self._flows[principal] = _Flow(self.weights.get(principal, _DEFAULT_WEIGHT))
        if not flow:
            self._active.append(principal)
            if len(self._active) == 1:
                self._turn()
        flow.push(request_id, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted as it was cancelled: pass the session on
            else:
                flow.discard(request_id, waiter)
                if not flow:
                    self._retire(principal)
            raise

    def release(self) -> None:
        """Give the session to the next waiter in DRR order, or back to the pool."""
        waiter = self._next()
        if waiter is None:
            self._free = min(self.capacity, self._free + 1)
        else:
            waiter.set_result(None)

    def _next(self) -> asyncio.Future[None] | None:
        while self._active:
            principal = self._active[0]
            flow = self._flows[principal]
            if flow.deficit >= 1:
                flow.deficit -= 1
                waiter = flow.pop()
                if not flow:
                    self._retire(principal)
                if not waiter.done():
                    return waiter
                continue  # cancelled meanwhile: its session goes to the next one
            # Its turn is over: the next principal's begins.
            self._active.rotate(-1)
            self._turn()
        return None

    def _turn(self) -> None:
        """The principal at the head starts its turn: its quantum is its weight."""
        if self._active:
            head = self._flows[self._active[0]]
            head.deficit += head.weight

    def _retire(self, principal: str) -> None:
        """No more waiters: out of the round (an idle principal banks no credit)."""
        was_head = bool(self._active) and self._active[0] == principal
        with contextlib.suppress(ValueError):
            self._active.remove(principal)
        self._flows.pop(principal, None)
        if was_head:
            self._turn()
