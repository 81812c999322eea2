"""Results too large for one Kafka record are shrunk, keeping counts and digests intact."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from collector.shrink import cut_middle, fit_result, share
from schemas import Result
from tests.support.records import make_result


def _result(stdout: bytes, stderr: bytes = b"", *, stdout_bytes: int | None = None) -> Result:
    return make_result(stdout=stdout, stderr=stderr, stdout_bytes=stdout_bytes)


def _common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _is_head_and_tail(part: bytes, whole: bytes) -> bool:
    """`part` is a prefix of `whole` followed by a suffix of it."""
    head = _common_prefix(part, whole)
    tail = _common_prefix(part[::-1], whole[::-1])
    return len(part) - tail <= head and len(part) <= len(whole)


@pytest.mark.parametrize(
    ("data", "keep", "expected"),
    [
        (b"abcdef", 10, b"abcdef"),
        (b"abcdef", 6, b"abcdef"),
        (b"abcdef", 4, b"abef"),
        (b"abcdef", 3, b"aef"),
        (b"abcdef", 0, b""),
        ("aé€z".encode(), 4, b"a" + b"z"),  # never splits a character
        (b"\xff\xfe\xfd\xfc", 2, b"\xff\xfc"),  # binary: cut anywhere
    ],
)
def test_cut_middle_keeps_head_and_tail(data: bytes, keep: int, expected: bytes) -> None:
    assert cut_middle(data, keep) == expected


def test_cut_middle_marks_what_was_omitted_from_the_whole_stream() -> None:
    data = bytes(range(48, 58)) * 100  # 1,000 bytes of digits
    cut = cut_middle(data, 200, total=5_000)  # the capture was already a part of 5,000
    head, marker, tail = _split(cut)
    assert len(cut) <= 200
    assert data.startswith(head)
    assert data.endswith(tail)
    assert marker == b"\n[fleetrun: %d bytes omitted]\n" % (5_000 - len(head) - len(tail))
    assert cut_middle(data, 100, total=5_000).count(b"omitted") == 0  # no room for a marker


def _split(cut: bytes) -> tuple[bytes, bytes, bytes]:
    m = re.search(rb"\n\[fleetrun: \d+ bytes omitted\]\n", cut)
    if m is None:
        return cut, b"", b""
    return cut[: m.start()], m.group(), cut[m.end() :]


@pytest.mark.parametrize(
    ("sizes", "budget", "expected"),
    [
        ((10, 10), 100, (10, 10)),
        ((10, 1000), 100, (10, 90)),
        ((1000, 10), 100, (90, 10)),
        ((1000, 1000), 100, (50, 50)),
        ((1000, 1000), -5, (0, 0)),
    ],
)
def test_share_is_fair(sizes: tuple[int, int], budget: int, expected: tuple[int, int]) -> None:
    assert share(sizes, budget) == expected


def test_small_results_are_untouched() -> None:
    r = _result(b"hello\n")
    fitted, data = fit_result(r, 1_000_000)
    assert fitted is r
    assert data == schemas.encode(r)


@pytest.mark.parametrize(
    ("stdout", "stderr", "limit"),
    [
        (b"x" * 200_000, b"", 50_000),
        (b"x" * 200_000, b"e" * 200_000, 50_000),
        (bytes(range(256)) * 800, b"", 30_000),  # base64 on the wire
        (b'"\\\n\x01' * 50_000, b"err", 20_000),  # JSON escapes make text expand
        (b"x" * 10_000, b"", 1_500),  # room for almost nothing
    ],
)
def test_large_results_fit_and_keep_their_totals(stdout: bytes, stderr: bytes, limit: int) -> None:
    r = _result(stdout, stderr)
    fitted, data = fit_result(r, limit)
    assert len(data) <= limit
    back = schemas.decode_result(data)
    assert back == fitted
    assert (back.stdout_bytes, back.stderr_bytes) == (len(stdout), len(stderr))
    assert back.stdout_sha256 == hashlib.sha256(stdout).hexdigest()
    assert back.stderr_sha256 == hashlib.sha256(stderr).hexdigest()
    assert back.stdout_truncated == (len(back.stdout_data) < len(stdout))
    for part, whole in ((back.stdout_data, stdout), (back.stderr_data, stderr)):
        head, marker, tail = _split(part)
        assert _is_head_and_tail(head + tail, whole)
        if marker:
            assert marker == b"\n[fleetrun: %d bytes omitted]\n" % (
                len(whole) - len(head) - len(tail)
            )
    # Output was cut only as far as needed: most of the limit is used.
    if back.stdout:
        assert len(data) > limit * 0.5


def test_already_truncated_streams_stay_consistent() -> None:
    head_tail = b"h" * 30_000 + b"t" * 30_000
    r = _result(head_tail, stdout_bytes=10_000_000)
    assert r.stdout_truncated
    fitted, data = fit_result(r, 20_000)
    assert len(data) <= 20_000
    assert fitted.stdout_data.startswith(b"h")
    assert fitted.stdout_data.endswith(b"t")
    assert fitted.stdout_bytes == 10_000_000
    assert fitted.stdout_truncated


def test_impossible_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="without output"):
        fit_result(_result(b"x" * 1000), 100)


@settings(max_examples=60, deadline=None)
@given(
    stdout=st.binary(max_size=20_000) | st.text(max_size=5_000).map(str.encode),
    stderr=st.binary(max_size=20_000),
    limit=st.integers(2_000, 40_000),
)
def test_property_always_fits(stdout: bytes, stderr: bytes, limit: int) -> None:
    fitted, data = fit_result(_result(stdout, stderr), limit)
    assert len(data) <= limit
    assert fitted.stdout_sha256 == hashlib.sha256(stdout).hexdigest()
    assert fitted.stdout_bytes == len(stdout)
    assert fitted.stderr_bytes == len(stderr)
