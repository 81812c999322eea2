"""Which offset each partition may commit when requests finish out of order (pure, no Kafka).

A request is *started* when its record is fetched and *finished* once every result and its
completed status are acknowledged. The committable offset of a partition (the next offset to
read, Kafka's convention) is the lowest offset still in flight, or one past the last started
offset when nothing is in flight. Offsets need not be consecutive (transaction markers and
compaction leave gaps), so the tracker only ever compares offsets it was given.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Partition:
    next_offset: int  # one past the last started offset
    # Offsets arrive in increasing order, so insertion order is sorted order and the first key is
    # the lowest offset still in flight; deleting any key is O(1).
    inflight: dict[int, None] = field(default_factory=dict)
    committed: int | None = None

    @property
    def committable(self) -> int:
        return next(iter(self.inflight)) if self.inflight else self.next_offset


class OffsetTracker(Generic[K]):
    """In-flight offsets per partition and the highest contiguous finished offset to commit."""

    def __init__(self) -> None:
        self._parts: dict[K, _Partition] = {}

    def start(self, tp: K, offset: int) -> bool:
        """Record that the request at `offset` is in flight; False if it was already seen."""
        if offset < 0:
            raise ValueError(f"offset {offset} is negative")
        part = self._parts.get(tp)
        if part is None:
            self._parts[tp] = part = _Partition(next_offset=offset)
        elif offset < part.next_offset:
            return False  # a redelivery within the same assignment: it is handled already
        part.inflight[offset] = None
        part.next_offset = offset + 1
        return True

    def finish(self, tp: K, offset: int) -> int | None:
        """Record that `offset` finished; the partition's committable offset if it moved."""
        part = self._parts.get(tp)
        if part is None or offset not in part.inflight:
            return None  # revoked meanwhile, or never started here: nothing to commit
        before = part.committable
        del part.inflight[offset]
        after = part.committable
        return after if after != before else None

    def committable(self, tp: K) -> int | None:
        """The offset to commit for `tp` (next to read), or None when nothing was started."""
        part = self._parts.get(tp)
        return None if part is None else part.committable

    def pending(self) -> dict[K, int]:
        """Committable offsets that differ from the last ones marked committed."""
        return {
            tp: part.committable
            for tp, part in self._parts.items()
            if part.committable != part.committed
        }

    def mark_committed(self, offsets: Mapping[K, int]) -> None:
        """Remember that Kafka accepted these offsets (so `pending` stops returning them)."""
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = offset

    def inflight(self, tp: K | None = None) -> int:
        """Requests in flight on `tp`, or on every partition."""
        if tp is not None:
            part = self._parts.get(tp)
            return 0 if part is None else len(part.inflight)
        return sum(len(p.inflight) for p in self._parts.values())

    def inflight_offsets(self, tp: K) -> list[int]:
        """The offsets in flight on `tp`, lowest first."""
        part = self._parts.get(tp)
        return [] if part is None else list(part.inflight)

    def partitions(self) -> list[K]:
        """Partitions the tracker holds state for."""
        return list(self._parts)

    def revoke(self, tps: Iterable[K]) -> dict[K, list[int]]:
        """Forget partitions that were taken away; returns the offsets still in flight there."""
        abandoned: dict[K, list[int]] = {}
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is not None and part.inflight:
                abandoned[tp] = list(part.inflight)
        return abandoned
