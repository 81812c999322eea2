"""The benchmark harness's pure numbers: percentiles, completeness, summaries, peer parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.peers.ansible import status_of
from bench.peers.clush import stderr_statuses
from bench.peers.common import round_numbers
from bench.stats import (
    HostResult,
    cdf_sample,
    completeness,
    failures,
    percentile,
    rate,
    ratio,
    summarise,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # order does not matter
        ([float(i) for i in range(1, 101)], 99, 99.01),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == (pytest.approx(expected) if expected is not None else None)


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1), st.floats(0, 100))
def test_percentile_within_bounds(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p is not None
    assert min(values) <= p <= max(values)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), max_size=2000))
def test_cdf_sample_keeps_extremes_and_order(values: list[float]) -> None:
    sample = cdf_sample(values, points=50)
    assert len(sample) == min(len(values), 50)
    assert sample == sorted(sample)
    if values:
        assert sample[0] == min(values)
        assert sample[-1] == max(values)


def _r(rnd: int, host: str, status: str = "ok", ms: float = 1.0) -> HostResult:
    return HostResult(rnd, host, status, ms)


@pytest.mark.parametrize(
    ("results", "rounds", "missing", "duplicates", "complete"),
    [
        ([_r(1, "a"), _r(1, "b")], 1, 0, 0, True),
        ([_r(1, "a")], 1, 1, 0, False),
        ([_r(1, "a"), _r(1, "a"), _r(1, "b")], 1, 0, 1, False),
        ([_r(1, "a"), _r(1, "b"), _r(2, "a")], 2, 1, 0, False),
        ([_r(1, "a"), _r(1, "b"), _r(1, "zz")], 1, 0, 0, True),  # a stranger is not a target
    ],
)
def test_completeness(
    results: list[HostResult], rounds: int, missing: int, duplicates: int, complete: bool
) -> None:
    check = completeness(results, rounds, ["a", "b"])
    assert (check.missing, check.duplicates, check.complete) == (missing, duplicates, complete)
    assert check.expected == 2 * rounds


@pytest.mark.parametrize(
    ("value", "base", "expected"),
    [(10.0, 5.0, 2.0), (None, 5.0, None), (10.0, None, None), (10.0, 0.0, None)],
)
def test_ratio(value: float | None, base: float | None, expected: float | None) -> None:
    assert ratio(value, base) == expected


def test_rate_and_failures() -> None:
    assert rate(100, 2.0) == 50.0
    assert rate(100, None) is None
    assert rate(100, 0.0) is None
    assert failures({"ok": 9, "timeout": 2, "failed": 0}) == {"timeout": 2}


def test_summarise() -> None:
    results = [_r(1, "a", "ok", 10.0), _r(1, "b", "timeout", 5000.0)]
    s = summarise(results, rounds=1, hosts=["a", "b"], wall_s=2.0)
    assert s["results"] == 2
    assert s["results_per_s"] == 1.0
    assert s["statuses"] == {"ok": 1, "timeout": 1}
    assert s["failures"] == {"timeout": 1}
    assert s["complete"] is True
    assert s["latency_ms"] == {"p50": 2505.0, "p99": 4950.1, "max": 5000.0}
    assert summarise([], rounds=1, hosts=["a"], wall_s=None)["results_per_s"] is None


def test_round_numbers() -> None:
    assert round_numbers(0, 2) == [1, 2]
    assert round_numbers(2, 1) == [-1, 0, 1]


@pytest.mark.parametrize(
    ("word", "rc", "text", "expected"),
    [
        ("CHANGED", "0", "", "ok"),
        ("CHANGED", "3", "", "failed"),
        ("FAILED", "1", "", "failed"),
        ("FAILED", None, "", "error"),
        ("UNREACHABLE!", None, "Connection timed out during banner exchange", "timeout"),
        ("UNREACHABLE!", None, "Permission denied", "unreachable"),
    ],
)
def test_ansible_status(word: str, rc: str | None, text: str, expected: str) -> None:
    assert status_of(word, rc, text) == expected


def test_clush_stderr_expands_folded_nodes() -> None:
    text = (
        "127.2.0.5: sim@127.2.0.5: Permission denied (publickey).\n"
        "clush: 127.2.0.5: exited with exit code 255\n"
        "clush: 127.2.0.1: exited with exit code 3\n"
        "clush: 127.2.0.[2-3]: command timeout\n"
    )
    assert stderr_statuses(text) == {
        "127.2.0.5": "unreachable",
        "127.2.0.1": "failed",
        "127.2.0.2": "timeout",
        "127.2.0.3": "timeout",
    }
