"""Per-partition batching and offset bookkeeping: pure, no Kafka or database imports.

The sink buffers each Kafka partition's records separately. A partition's batch is due when it
holds `max_rows` records or `max_bytes` bytes, when its oldest record has waited `linger_s`,
when the whole buffer passes `max_buffer_bytes` (then the biggest batches go first), or when the
partition has caught up (`caught_up`: the consumer has nothing more of it for now). The last is
smart batching: a lone request's rows are written at once instead of after the linger, while
under a backlog (never caught up) or a busy database (a batch in flight) batches still fill. A
flush (one transaction) takes the due batches and what other partitions have pending, up to
`max_rows` and `max_bytes` in all. At most one batch per partition is being written at a time,
so offsets are committed in order: a batch's commit offset (the next offset to read) is handed
out only after that batch is stored, and only if the partition is still ours in the same
assignment (epoch) it was read in.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # a partition (aiokafka's TopicPartition in the service)
T = TypeVar("T")  # what is buffered per record


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When a partition's batch is flushed, and how much may wait in memory overall."""

    max_rows: int
    max_bytes: int
    linger_s: float
    max_buffer_bytes: int

    def __post_init__(self) -> None:
        if min(self.max_rows, self.max_bytes, self.max_buffer_bytes) < 1 or self.linger_s < 0:
            raise ValueError(f"batch limits must be positive: {self}")


@dataclass(slots=True)
class Batch(Generic[K, T]):
    """Records of one partition taken for one flush; `commit_offset` is the next one to read."""

    partition: K
    items: list[T]
    nbytes: int
    first_offset: int
    commit_offset: int
    epoch: int


@dataclass(slots=True)
class _Partition(Generic[T]):
    epoch: int
    items: list[T] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    nbytes: int = 0
    first_at: float = 0.0
    next_offset: int = -1  # one past the last offset buffered in this epoch
    inflight: int = 0  # bytes of the batch being written, 0 when none
    caught_up: bool = False  # the consumer had nothing more of it when last asked


class Batcher(Generic[K, T]):
    """Buffers records per partition and decides which batches are due; see the module doc."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self._parts: dict[K, _Partition[T]] = {}
        self._epoch = 0
        self._pending_bytes = 0
        self._inflight_bytes = 0

    # -- assignment ----------------------------------------------------------------------------
    def assign(self, partitions: Iterable[K]) -> None:
        """Start (or restart) buffering these partitions in a new epoch."""
        self._epoch += 1
        for key in partitions:
            self._drop(key)
            self._parts[key] = _Partition(epoch=self._epoch)

    def revoke(self, partitions: Iterable[K]) -> int:
        """Forget these partitions and their pending records; return how many were dropped.

        Nothing of theirs was committed, so the next owner reads them again; rows are
        idempotent, so records that were also written by an in-flight batch are harmless.
        """
        return sum(self._drop(key) for key in partitions)

    def _drop(self, key: K) -> int:
        part = self._parts.pop(key, None)
        if part is None:
            return 0
        self._pending_bytes -= part.nbytes
        self._inflight_bytes -= part.inflight
        return len(part.items)

    # -- buffering ------------------------------------------------------------------------------
    def add(self, key: K, offset: int, item: T, nbytes: int, now: float) -> bool:
        """Buffer one record; False (nothing kept) for a partition we do not own.

        An offset below the last one buffered means the consumer was rewound (a seek): the
        pending records are dropped and buffering restarts there, so no offset is skipped.
        """
        return self.extend(key, [offset], [item], [nbytes], now)

    def extend(
        self, key: K, offsets: list[int], items: list[T], sizes: list[int], now: float
    ) -> bool:
        """Buffer a run of records at ascending offsets (one fetch's worth), as add() does one."""
        # One call per fetched run instead of one per record: the sink's loop decodes tens of
        # thousands of records a second, and per-record bookkeeping showed in its profile.
        part = self._parts.get(key)
        if part is None:
            return False
        if not items:
            return True
        self._rewound(part, offsets[0], now)
        part.caught_up = False
        part.items.extend(items)
        part.offsets.extend(offsets)
        part.sizes.extend(sizes)
        nbytes = sum(sizes)
        part.nbytes += nbytes
        part.next_offset = offsets[-1] + 1
        self._pending_bytes += nbytes
        return True

    def _rewound(self, part: _Partition[T], offset: int, now: float) -> None:
        """Before buffering `offset`: drop what a rewind made stale; start the linger clock."""
        if offset < part.next_offset and part.items:
            self._pending_bytes -= part.nbytes
            part.items.clear()
            part.offsets.clear()
            part.sizes.clear()
            part.nbytes = 0
        if not part.items:
            part.first_at = now

    def due(self, now: float) -> list[K]:
        """Partitions whose batch should be written now (none already being written), most
        urgent first: full batches, then under memory pressure the biggest, then the oldest."""
        lim = self.limits
        pressure = self._pending_bytes + self._inflight_bytes >= lim.max_buffer_bytes
        ready: list[tuple[int, float, K]] = []
        for key, part in self._parts.items():
            if part.inflight or not part.items:
                continue
            full = len(part.items) >= lim.max_rows or part.nbytes >= lim.max_bytes
            if full:
                ready.append((0, -part.nbytes, key))
            elif pressure:
                ready.append((1, -part.nbytes, key))
            elif now - part.first_at >= lim.linger_s or part.caught_up:
                ready.append((2, part.first_at, key))
        ready.sort(key=lambda r: (r[0], r[1]))
        return [key for _, _, key in ready]

    def take(
        self, key: K, max_rows: int | None = None, max_bytes: int | None = None
    ) -> Batch[K, T]:
        """Take the partition's oldest pending records, within the row and byte limits (at
        least one record, however big)."""
        part = self._parts[key]
        if part.inflight or not part.items:
            raise ValueError(f"nothing to take from {key!r}")
        max_rows = self.limits.max_rows if max_rows is None else max_rows
        max_bytes = self.limits.max_bytes if max_bytes is None else max_bytes
        count, nbytes = 0, 0
        for size in part.sizes:
            if count and (count >= max_rows or nbytes + size > max_bytes):
                break
            count += 1
            nbytes += size
        batch = Batch(
            partition=key,
            items=part.items[:count],
            nbytes=nbytes,
            first_offset=part.offsets[0],
            commit_offset=part.offsets[count - 1] + 1,
            epoch=part.epoch,
        )
        del part.items[:count], part.offsets[:count], part.sizes[:count]
        part.nbytes -= nbytes
        part.inflight = nbytes
        self._pending_bytes -= nbytes
        self._inflight_bytes += nbytes
        return batch

    def next_flush(self, now: float, *, force: bool = False) -> list[Batch[K, T]]:
        """The batches of the next flush (one transaction), or [] when nothing is due.

        A flush starts when some partition is due (with `force`, when any has records, as at
        shutdown), then takes along what other partitions have pending (biggest first), up to
        max_rows and max_bytes in all: the fewer and fuller the transactions, the less each row
        costs the database.
        """
        due = [] if force else self.due(now)
        if not due and not force:
            return []
        others = sorted(
            (k for k, p in self._parts.items() if p.items and not p.inflight and k not in due),
            key=lambda k: -self._parts[k].nbytes,
        )
        rows_left, bytes_left = self.limits.max_rows, self.limits.max_bytes
        batches: list[Batch[K, T]] = []
        for key in [*due, *others]:
            if rows_left <= 0 or bytes_left <= 0:
                break
            batch = self.take(key, rows_left, bytes_left)
            batches.append(batch)
            rows_left -= len(batch.items)
            bytes_left -= batch.nbytes
        return batches

    def done(self, batch: Batch[K, T]) -> int | None:
        """The batch is stored: the offset to commit, or None if the partition moved on."""
        part = self._release(batch)
        return batch.commit_offset if part is not None else None

    def abandon(self, batch: Batch[K, T]) -> None:
        """The batch was not stored (shutdown deadline): nothing to commit, it will be re-read."""
        self._release(batch)

    def _release(self, batch: Batch[K, T]) -> _Partition[T] | None:
        part = self._parts.get(batch.partition)
        if part is None or part.epoch != batch.epoch:
            return None  # revoked (and maybe re-assigned) while it was being written
        self._inflight_bytes -= part.inflight
        part.inflight = 0
        return part

    # -- state for the loop -----------------------------------------------------------------------
    def inflight(self, key: K) -> bool:
        """Whether a batch of this partition is being written."""
        part = self._parts.get(key)
        return part is not None and part.inflight > 0

    def to_pause(self) -> set[K]:
        """Partitions that should stop fetching: their pending batch is full, or the whole
        buffer is (then all of them)."""
        lim = self.limits
        if self._pending_bytes + self._inflight_bytes >= lim.max_buffer_bytes:
            return set(self._parts)
        return {
            key
            for key, part in self._parts.items()
            if len(part.items) >= lim.max_rows or part.nbytes >= lim.max_bytes
        }

    def caught_up(self, fetched: Iterable[K]) -> None:
        """The consumer has nothing more buffered: every partition with pending records that
        is not in `fetched` (the partitions this poll returned records of) has caught up."""
        fresh = set(fetched)
        for key, part in self._parts.items():
            if part.items and key not in fresh:
                part.caught_up = True

    def lingering(self) -> bool:
        """Whether some partition has pending records not yet known to have caught up."""
        return any(p.items and not p.inflight and not p.caught_up for p in self._parts.values())

    def next_deadline(self) -> float | None:
        """When the oldest pending record's linger ends (None if nothing is pending)."""
        firsts = [p.first_at for p in self._parts.values() if p.items and not p.inflight]
        return min(firsts) + self.limits.linger_s if firsts else None

    @property
    def pending_rows(self) -> int:
        return sum(len(p.items) for p in self._parts.values())

    @property
    def buffered_bytes(self) -> int:
        """Bytes pending plus bytes being written."""
        return self._pending_bytes + self._inflight_bytes
