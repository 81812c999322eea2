"""Retry delays: doubling from a base up to a cap, with "equal jitter". Pure; used by the
collector (connection retries, publishing) and the sink (database retries)."""

from __future__ import annotations


def backoff_delay(failed_attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """Seconds to wait after attempt `failed_attempt` (1-based) failed, before the next one.

    The ceiling doubles per attempt from `base_s` up to `max_s`; `jitter` in [0, 1] picks a
    point in the upper half of it ("equal jitter"), so retries of hosts that failed together
    spread out while each still waits at least half the ceiling.
    """
    if failed_attempt < 1:
        raise ValueError(f"failed_attempt must be ≥ 1, got {failed_attempt}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be within [0, 1], got {jitter}")
    # min() before the power would overflow: 2**1000 is fine for ints, not for floats.
    ceiling = max(0.0, min(max_s, base_s * 2.0 ** min(failed_attempt - 1, 64)))
    return ceiling / 2 + ceiling / 2 * jitter
