"""Bounded capture: exact totals and digests, head + marker + tail, flat memory, UTF-8 cuts."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.capture import MARKER_TEMPLATE, MIN_MARKER_BUDGET, Captured, StreamCapture
from schemas import EMPTY_SHA256

MARKER = re.compile(rb"\n\[fleetrun: (\d+) bytes omitted\]\n")


def capture(chunks: list[bytes], max_bytes: int) -> tuple[StreamCapture, Captured]:
    cap = StreamCapture(max_bytes)
    for chunk in chunks:
        cap.feed(chunk)
    return cap, cap.result()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    out, start = [], 0
    for p in [*points, len(data)]:
        out.append(data[start:p])
        start = p
    return out


@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    max_bytes=st.integers(0, 2500),
)
@settings(max_examples=400, deadline=None)
def test_capture_invariants(data: bytes, cuts: list[int], max_bytes: int) -> None:
    cap, got = capture(split(data, cuts), max_bytes)
    assert got.total_bytes == len(data) == cap.total_bytes
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert len(got.data) <= max_bytes
    assert got.truncated == (len(got.data) < len(data))  # the schemas' "truncated" rule
    if len(data) <= max_bytes:
        assert got.data == data
        assert not got.truncated
        return
    assert got.truncated
    # The head is the stream's beginning (at most 3 bytes of a split character dropped).
    head_cap = max_bytes // 2
    m = MARKER.search(got.data) if max_bytes >= MIN_MARKER_BUDGET else None
    if m is None:
        assert max_bytes < MIN_MARKER_BUDGET
        return
    head, tail = got.data[: m.start()], got.data[m.end() :]
    assert data.startswith(head)
    assert head_cap - 3 <= len(head) <= head_cap
    assert data.endswith(tail)
    assert int(m.group(1)) == len(data) - len(head) - len(tail)
    # The budget is used: only the marker's variable width and UTF-8 trims can leave a gap.
    assert len(got.data) >= max_bytes - 3 - 3 - 20


@given(chunks=st.lists(st.binary(max_size=700), max_size=20), max_bytes=st.integers(0, 1200))
@settings(max_examples=200, deadline=None)
def test_chunking_does_not_change_the_capture(chunks: list[bytes], max_bytes: int) -> None:
    _, by_chunks = capture(chunks, max_bytes)
    _, at_once = capture([b"".join(chunks)], max_bytes)
    assert by_chunks == at_once


@given(text=st.text(min_size=1, max_size=2000), max_bytes=st.integers(MIN_MARKER_BUDGET, 1500))
@settings(max_examples=300, deadline=None)
def test_text_output_stays_valid_utf8_when_cut(text: str, max_bytes: int) -> None:
    data = text.encode("utf-8", "surrogatepass")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return  # lone surrogates are not UTF-8 in the first place
    _, got = capture([data], max_bytes)
    got.data.decode("utf-8")  # raises if a character was split


def test_memory_stays_flat_for_a_large_stream() -> None:
    cap = StreamCapture(4096)
    chunk = bytes(range(256)) * 256  # 64 KiB
    digest = hashlib.sha256()
    for _ in range(1600):  # 100 MiB
        cap.feed(chunk)
        digest.update(chunk)
        assert len(cap._head) + len(cap._tail) <= 4096
    got = cap.result()
    assert got.total_bytes == 1600 * len(chunk)
    assert got.sha256 == digest.hexdigest()
    assert len(got.data) <= 4096
    assert got.truncated


@pytest.mark.parametrize(
    ("chunks", "max_bytes", "expected"),
    [
        ([], 10, b""),
        ([b"hello"], 10, b"hello"),
        ([b"hel", b"lo"], 5, b"hello"),
        ([b"hello world"], 4, b"held"),  # tiny budget: head + tail, no marker
        ([b"abcdef"], 0, b""),
    ],
)
def test_examples(chunks: list[bytes], max_bytes: int, expected: bytes) -> None:
    assert capture(chunks, max_bytes)[1].data == expected


def test_marker_layout() -> None:
    data = b"A" * 100 + b"B" * 1000 + b"C" * 100
    got = capture([data], 200)[1]
    marker = MARKER_TEMPLATE % (len(data) - 100 - (200 - 100 - len(MARKER_TEMPLATE % 1000)))
    assert got.data == b"A" * 100 + marker + b"C" * (200 - 100 - len(marker))
    assert len(got.data) == 200


def test_a_split_character_is_dropped_not_mangled() -> None:
    data = "é".encode() * 200  # 2 bytes each; a half-way cut lands inside one
    got = capture([data], 203)[1]  # head budget 101: the cut lands inside a character
    head = got.data.split(b"\n[fleetrun")[0]
    assert len(head) == 100
    assert head.decode() == "é" * 50


def test_empty_stream() -> None:
    got = StreamCapture(100).result()
    assert got == Captured(b"", 0, False, EMPTY_SHA256)


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        StreamCapture(-1)
