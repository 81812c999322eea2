"""Pure helpers for the console's pages: output made visible, durations, the histogram.

Jinja2 autoescapes every value (HTML cannot be injected); these also make visible what a page
would hide: a terminal escape such as ESC [31m is shown as a marked `\\x1b[31m`, not swallowed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

from fleetrun.cli.safetext import control_code, shown

# The CLI's escaping, with each code in a marked span (fonts rarely have the Unicode "control
# pictures" such as ␛; every font has these).
_SHOWN: Final = '<span class="ctl" title="control character">{}</span>'


def visible(text: str) -> Markup:
    """`text` as escaped HTML, each control character shown as a marked `\\x1b`-style code."""
    # HTML escaping leaves control characters alone, so they are replaced after it.
    return Markup(shown(str(escape(text)), lambda char: _SHOWN.format(control_code(char))))  # noqa: S704 (escaped above)


def output_text(data: bytes) -> Markup:
    """Captured output for a page: undecodable bytes as U+FFFD, controls shown, escaped."""
    return visible(data.decode("utf-8", errors="replace").rstrip("\n"))


def duration_text(ms: float | None) -> str:
    """`850 ms`, `4.2 s`, `3 min 5 s`; empty when unknown."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


# Bucket edges of the duration histogram, in ms: roughly ×2.5 apart, from a quick command on a
# pooled connection to a long upgrade.
EDGES_MS: Final = (100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000)


@dataclass(frozen=True, slots=True)
class Bar:
    """One histogram bucket: its label, how many hosts fell in it, its width in percent."""

    label: str
    count: int
    percent: float


def histogram(durations_ms: Iterable[int], edges: Sequence[int] = EDGES_MS) -> list[Bar]:
    """Hosts per duration bucket, from the first non-empty bucket to the last."""
    counts = [0] * (len(edges) + 1)
    for d in durations_ms:
        counts[bisect.bisect_right(edges, d)] += 1
    used = [i for i, n in enumerate(counts) if n]
    if not used:
        return []
    top = max(counts)
    bars = []
    for i in range(used[0], used[-1] + 1):
        low = 0 if i == 0 else edges[i - 1]
        label = f"≥ {duration_text(low)}" if i == len(edges) else f"< {duration_text(edges[i])}"
        bars.append(Bar(label, counts[i], round(100 * counts[i] / top, 1)))
    return bars
