"""Pure numbers for the benchmark harness: percentiles, per-run summaries, completeness, ratios.

No I/O and no third-party imports, so the unit tests exercise exactly what the report prints.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

CDF_POINTS = 400  # latencies kept per run for the CDF plot (evenly spaced ranks)


@dataclass(frozen=True, slots=True)
class HostResult:
    """One result as every tool reports it: which round, which host, how it ended, when."""

    round: int
    host: str
    status: str
    latency_ms: float  # from the round's (request's) submission to this host's result


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between ranks; None when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def cdf_sample(values: Sequence[float], points: int = CDF_POINTS) -> list[float]:
    """At most `points` values at evenly spaced ranks of the sorted input (first and last kept)."""
    ordered = sorted(values)
    if len(ordered) <= points:
        return [float(v) for v in ordered]
    step = (len(ordered) - 1) / (points - 1)
    return [float(ordered[round(i * step)]) for i in range(points)]


@dataclass(frozen=True, slots=True)
class Completeness:
    """The invariant: exactly one result per (round, target)."""

    expected: int
    distinct: int
    duplicates: int
    missing: int

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.duplicates == 0


def completeness(results: Iterable[HostResult], rounds: int, hosts: Sequence[str]) -> Completeness:
    """Check one result per (round, host) for rounds 1..rounds over `hosts`."""
    wanted = {(r, h) for r in range(1, rounds + 1) for h in hosts}
    seen = Counter((x.round, x.host) for x in results)
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    distinct = len(seen.keys() & wanted)
    return Completeness(len(wanted), distinct, duplicates, len(wanted) - distinct)


def status_counts(results: Iterable[HostResult]) -> dict[str, int]:
    """Results per status, most frequent first."""
    return dict(Counter(r.status for r in results).most_common())


def failures(statuses: Mapping[str, int]) -> dict[str, int]:
    """The non-`ok` part of a status count."""
    return {s: n for s, n in statuses.items() if s != "ok" and n}


def rate(count: int, seconds: float | None) -> float | None:
    """count per second, None when the time is unknown or zero."""
    if seconds is None or seconds <= 0:
        return None
    return count / seconds


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, None when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def summarise(
    results: Sequence[HostResult], *, rounds: int, hosts: Sequence[str], wall_s: float | None
) -> dict[str, object]:
    """The per-run figures of the report: rate, latency percentiles, statuses, completeness."""
    lat = [r.latency_ms for r in results]
    statuses = status_counts(results)
    check = completeness(results, rounds, hosts)
    per_s = rate(len(results), wall_s)
    return {
        "results": len(results),
        "wall_s": None if wall_s is None else round(wall_s, 3),
        "results_per_s": None if per_s is None else round(per_s, 1),
        "latency_ms": {
            "p50": _round(percentile(lat, 50)),
            "p99": _round(percentile(lat, 99)),
            "max": _round(max(lat) if lat else None),
        },
        "statuses": statuses,
        "failures": failures(statuses),
        "expected": check.expected,
        "missing": check.missing,
        "duplicates": check.duplicates,
        "complete": check.complete,
        "latency_cdf_ms": [round(v, 1) for v in cdf_sample(lat)],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
