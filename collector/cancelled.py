"""The cancels a collector knows, by request_id: bounded by age and count, watchable.

Pure bookkeeping (no Kafka): collector.cancels fills it from the cancels topic; request handlers
read it (`cancelled`) and wait on it (`watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from schemas import Cancel

log = logging.getLogger("fleetrun.collector.cancels")


@dataclass(slots=True)
class _Entry:
    cancel: Cancel
    expires_at: float  # wall clock, seconds since the epoch


class CancelRegistry:
    """Cancels by request_id, each kept `ttl_s` after it was written and at most `max_entries`
    (the oldest go first), and an asyncio.Event per request a handler watches.

    The first cancel of a request wins (its principal is who cancelled). A watched request's
    cancel is kept past its age and count limits until the last watcher lets go.
    """

    def __init__(
        self, *, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max(1, max_entries)
        self.evicted = 0  # dropped by the count limit before their time
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Drains (Cancel.drain) apart: they skip hosts not started and kill nothing, and a
        # real cancel after one must still count.
        self._drains: OrderedDict[str, _Entry] = OrderedDict()
        self._events: dict[str, asyncio.Event] = {}
        self._watchers: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def watched(self) -> int:
        """Requests being watched now."""
        return len(self._watchers)

    def add(self, cancel: Cancel, *, written_at: float | None = None) -> bool:
        """Remember `cancel`, written to Kafka at `written_at` (epoch seconds; None: now).
        True when it is news: the first cancel of its request that still counts."""
        now = self._clock()
        expires_at = (now if written_at is None else written_at) + self.ttl_s
        rid = cancel.request_id
        if expires_at <= now:
            return False  # older than the lookback: it no longer counts
        if cancel.drain:
            return self._add_drain(cancel, expires_at)
        if self._live(rid, now) is not None:
            return False
        self._entries.pop(rid, None)
        self._entries[rid] = _Entry(cancel, expires_at)
        event = self._events.get(rid)
        if event is not None:
            event.set()
        self._trim()
        return True

    def cancelled(self, request_id: str) -> Cancel | None:
        """The cancel of `request_id`, or None when there is none (or it no longer counts)."""
        entry = self._live(request_id, self._clock())
        return None if entry is None else entry.cancel

    def drained(self, request_id: str) -> Cancel | None:
        """The drain of `request_id` (hosts not started are skipped), or None."""
        entry = self._drains.get(request_id)
        if entry is None or entry.expires_at <= self._clock():
            return None
        return entry.cancel

    def _add_drain(self, cancel: Cancel, expires_at: float) -> bool:
        rid = cancel.request_id
        if rid in self._drains:
            return False
        self._drains[rid] = _Entry(cancel, expires_at)
        while len(self._drains) > self.max_entries:
            self._drains.popitem(last=False)
        return True

    def is_watched(self, request_id: str) -> bool:
        """Whether a handler watches `request_id` here (the request runs on this collector)."""
        return request_id in self._watchers

    def watch(self, request_id: str) -> asyncio.Event:
        """An Event set when `request_id` is cancelled (already set if it is); call `unwatch`
        when done with it (or use `watching`)."""
        event = self._events.get(request_id)
        if event is None:
            event = self._events[request_id] = asyncio.Event()
            if self.cancelled(request_id) is not None:
                event.set()
        self._watchers[request_id] += 1
        return event

    def unwatch(self, request_id: str) -> None:
        """One watcher of `request_id` is done; the Event goes with the last one."""
        if self._watchers[request_id] <= 1:
            del self._watchers[request_id]
            self._events.pop(request_id, None)
        else:
            self._watchers[request_id] -= 1

    @contextlib.contextmanager
    def watching(self, request_id: str) -> Iterator[asyncio.Event]:
        """`watch` for the duration of a `with` block."""
        event = self.watch(request_id)
        try:
            yield event
        finally:
            self.unwatch(request_id)

    def expire(self) -> int:
        """Forget cancels past their age (not those of watched requests); how many went."""
        now = self._clock()
        old = [
            rid
            for rid, entry in self._entries.items()
            if entry.expires_at <= now and rid not in self._watchers
        ]
        for rid in old:
            del self._entries[rid]
        for rid in [r for r, e in self._drains.items() if e.expires_at <= now]:
            del self._drains[rid]
        return len(old)

    def _live(self, request_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(request_id)
        if entry is None or (entry.expires_at <= now and request_id not in self._watchers):
            return None
        return entry

    def _trim(self) -> None:
        over = len(self._entries) - self.max_entries
        if over <= 0:
            return
        # The oldest entries were written first (roughly: partitions interleave); watched ones
        # stay, which lets the registry exceed its cap by the requests running here at most.
        victims = [rid for rid in self._entries if rid not in self._watchers][:over]
        for rid in victims:
            del self._entries[rid]
        self.evicted += len(victims)
        if victims and (self.evicted == len(victims) or self.evicted % 1_000 < len(victims)):
            log.warning(
                "cancels dropped from memory before their time: cancel_max_entries reached "
                "(a request arriving after its dropped cancel runs)",
                extra={"max_entries": self.max_entries, "dropped_total": self.evicted},
            )
