"""Make a result fit in one Kafka record by capturing less output (pure).

A result is never dropped for being large: its captured stdout/stderr are cut further, keeping
the head and the tail of each stream with the executor's `[fleetrun: N bytes omitted]` marker
between them (collector.capture), until the encoded record fits. The byte counts and SHA-256
digests of the full streams are left exactly as the executor measured them; the truncated flags
follow from captured < total.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from collector.capture import MARKER_TEMPLATE, MIN_MARKER_BUDGET
from schemas import Result, encode, encode_output

# Each pass measures how much the JSON encoding actually costs (escapes, base64) and aims a
# little under the limit; a few passes always converge, and the last resort is no output at all.
_MAX_PASSES: Final = 8
_AIM: Final = 0.97


def cut_middle(data: bytes, keep: int, total: int | None = None) -> bytes:
    """At most `keep` bytes: the head and the tail of `data`; UTF-8 text stays valid UTF-8.

    With `total` (the whole stream's size) and room for it, the executor's marker
    `[fleetrun: N bytes omitted]` goes between them, N counted against the whole stream.
    """
    if keep >= len(data):
        return data
    if keep <= 0:
        return b""
    marker = MARKER_TEMPLATE % total if total is not None and keep >= MIN_MARKER_BUDGET else b""
    body = keep - len(marker)  # the marker's longest form: N only shrinks below
    head_n = body // 2
    tail_start = len(data) - (body - head_n)
    if _is_text(data):
        # Move both cuts onto character boundaries so the stream stays text on the wire
        # (a broken character would switch it to base64, a third larger).
        while head_n > 0 and _is_continuation(data[head_n]):
            head_n -= 1
        while tail_start < len(data) and _is_continuation(data[tail_start]):
            tail_start += 1
    head, tail = data[:head_n], data[tail_start:]
    if marker and total is not None:
        marker = MARKER_TEMPLATE % (total - len(head) - len(tail))
    return head + marker + tail


def share(sizes: tuple[int, int], budget: int) -> tuple[int, int]:
    """Split `budget` bytes between two streams fairly: a small stream keeps all it has."""
    a, b = sizes
    budget = max(0, budget)
    if a + b <= budget:
        return a, b
    half = budget // 2
    if a <= half:
        return a, budget - a
    if b <= half:
        return budget - b, b
    return half, budget - half


def fit_result(
    result: Result, max_bytes: int, *, encoder: Callable[[Result], bytes] = encode
) -> tuple[Result, bytes]:
    """`result` (or a copy with less captured output) and its encoding, at most `max_bytes`."""
    data = encoder(result)
    if len(data) <= max_bytes:
        return result, data
    bare = _with_output(result, b"", b"")
    base = len(encoder(bare))
    stdout, stderr = result.stdout_data, result.stderr_data
    sizes = (len(stdout), len(stderr))
    budget = int((max_bytes - base) * _AIM)
    for _ in range(_MAX_PASSES):
        if budget <= 0:
            break
        keep_out, keep_err = share(sizes, budget)
        candidate = _with_output(
            result,
            cut_middle(stdout, keep_out, result.stdout_bytes),
            cut_middle(stderr, keep_err, result.stderr_bytes),
        )
        data = encoder(candidate)
        if len(data) <= max_bytes:
            return candidate, data
        # Scale the raw budget by how far over the wire size was; always shrink a little.
        kept = len(candidate.stdout_data) + len(candidate.stderr_data)
        wire = len(data) - base
        budget = min(budget - 1, int(kept * (max_bytes - base) / wire * _AIM))
    data = encoder(bare)
    if len(data) > max_bytes:
        raise ValueError(
            f"a result without output is {len(data):,} bytes, over the {max_bytes:,} byte limit"
        )
    return bare, data


def _with_output(result: Result, stdout: bytes, stderr: bytes) -> Result:
    stdout_text, stdout_encoding = encode_output(stdout)
    stderr_text, stderr_encoding = encode_output(stderr)
    return msgspec.structs.replace(
        result,
        stdout=stdout_text,
        stdout_encoding=stdout_encoding,
        stderr=stderr_text,
        stderr_encoding=stderr_encoding,
        stdout_truncated=len(stdout) < result.stdout_bytes,
        stderr_truncated=len(stderr) < result.stderr_bytes,
    )


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_continuation(byte: int) -> bool:
    return 0x80 <= byte <= 0xBF
