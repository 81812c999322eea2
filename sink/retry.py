"""Retry delays: exponential backoff with jitter. Pure."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_s(
    attempt: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry number `attempt` (1, 2, …): half of min(cap, base·2^(attempt-1))
    plus a random share of the other half, so sinks that failed together retry apart."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempt - 1, 0), 30))
    return ceiling / 2 + rand() * ceiling / 2
