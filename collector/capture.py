"""Bounded capture of one output stream: head + tail within a byte budget, exact size and SHA-256.

Memory stays flat whatever a host prints: at most `max_bytes` are held (half for the head, the
rest for a sliding tail), while the total and the digest cover every byte received.

When the stream is longer than the budget, the captured bytes are

    head + MARKER + tail        (exactly `max_bytes` bytes, or a few less, see below)

where MARKER is the ASCII line ``b"\\n[fleetrun: <N> bytes omitted]\\n"`` and N is how many
bytes of the stream are not in the capture. The head and tail are cut on UTF-8 character
boundaries when the cut would otherwise split a character (so text output stays text: at most 3
bytes more are dropped on each side, and N counts them). Budgets too small for a useful marker
(under `MIN_MARKER_BUDGET`) keep head and tail with no marker. The result always satisfies the
contract: captured < total exactly when truncated, captured ≤ max_bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MARKER_TEMPLATE = b"\n[fleetrun: %d bytes omitted]\n"
# Below this budget a marker would take most of the room; keep plain head + tail instead. At 128
# the tail's half (64 bytes) always holds a marker for any stream size below 2**53.
MIN_MARKER_BUDGET = 128


@dataclass(frozen=True, slots=True)
class Captured:
    """What a stream produced: the kept bytes, the full size and the digest of the full stream."""

    data: bytes
    total_bytes: int
    truncated: bool
    sha256: str


class StreamCapture:
    """Feed chunks with `feed`; read the bounded capture with `result` (any number of times)."""

    __slots__ = ("_hash", "_head", "_head_cap", "_max", "_tail", "_tail_cap", "_total")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be ≥ 0, got {max_bytes}")
        self._max = max_bytes
        self._head_cap = max_bytes // 2
        self._tail_cap = max_bytes - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._hash = hashlib.sha256()

    @property
    def total_bytes(self) -> int:
        """Bytes received so far."""
        return self._total

    def feed(self, chunk: bytes) -> None:
        """Account for `chunk`: hash and count it, keep what fits in head and tail."""
        if not chunk:
            return
        self._total += len(chunk)
        self._hash.update(chunk)
        view = memoryview(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += view[:room]
            view = view[room:]
        if not view or not self._tail_cap:
            return
        if len(view) >= self._tail_cap:
            self._tail[:] = view[len(view) - self._tail_cap :]
            return
        self._tail += view
        excess = len(self._tail) - self._tail_cap
        if excess > 0:
            # bytearray deletes from the front in O(1) (it moves its start pointer).
            del self._tail[:excess]

    def result(self) -> Captured:
        """The capture as it stands: complete stream, or head + marker + tail when too long."""
        digest = self._hash.hexdigest()
        kept = len(self._head) + len(self._tail)
        if kept == self._total:
            return Captured(bytes(self._head + self._tail), self._total, False, digest)
        return Captured(self._truncated(), self._total, True, digest)

    def _truncated(self) -> bytes:
        head = _cut_head(bytes(self._head))
        if self._max < MIN_MARKER_BUDGET:
            tail = _cut_tail(bytes(self._tail))
            return head + tail
        # The marker's length depends on N, which depends on how much tail fits: two passes
        # settle it (N only shrinks as the tail grows, so the second marker is never longer).
        room = self._max - len(head)
        marker = MARKER_TEMPLATE % self._total
        if len(marker) > room:  # only for absurd totals; stay within the budget regardless
            return head + _cut_tail(bytes(self._tail[max(0, len(self._tail) - room) :]))
        tail = _cut_tail(bytes(self._tail[max(0, len(self._tail) - (room - len(marker))) :]))
        marker = MARKER_TEMPLATE % (self._total - len(head) - len(tail))
        return head + marker + tail


def _cut_head(data: bytes) -> bytes:
    """Drop a UTF-8 character split at the end of `data` (at most 3 bytes)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data  # ASCII: nothing split
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data  # not UTF-8 at all: cut anywhere


def _cut_tail(data: bytes) -> bytes:
    """Drop UTF-8 continuation bytes at the start of `data` (at most 3)."""
    for skip in range(min(3, len(data))):
        if not 0x80 <= data[skip] < 0xC0:
            return data[skip:]
    if len(data) > 3 and 0x80 <= data[3] < 0xC0:
        return data  # four continuation bytes in a row: binary, cut anywhere
    return data[min(3, len(data)) :]
