"""The report's PNG plots (matplotlib, Agg backend): throughput vs fleet size, latency CDFs.

matplotlib is in the `bench` extra only, so it is imported here, lazily, never by the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.tools import label

FANOUTS = ("fanout-100", "fanout-1000", "fanout-5000")
# One colour per tool in every plot; `@healthy` reference runs are dashed.
COLOURS = {
    "fleetrun": "tab:blue",
    "plainloop": "tab:orange",
    "seed": "tab:brown",
    "seed-preload": "tab:pink",
    "pssh": "tab:purple",
    "ansible": "tab:gray",
    "clush": "tab:green",
}


def style(tool: str) -> tuple[str, str]:
    """Colour and line style of a tool's curve."""
    base, _, suffix = tool.partition("@")
    return COLOURS.get(base, "black"), "--" if suffix else "-"


CDF_SCENARIOS = ("fanout-1000", "warm-500x50", "hang-1000")


def throughput_series(docs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """tool → [(hosts, results/s)] over the cold fan-out scenarios that ran."""
    series: dict[str, list[tuple[int, float]]] = {}
    for name in FANOUTS:
        for run in docs.get(name, {}).get("runs", []):
            if run.get("results_per_s") is not None and run.get("outcome") == "ok":
                series.setdefault(run["tool"], []).append(
                    (int(run["hosts"]), float(run["results_per_s"]))
                )
    return series


def draw(docs: Mapping[str, Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Write throughput.png and latency-cdf.png into out_dir; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    series = throughput_series(docs)
    if series:
        fig, ax = plt.subplots(figsize=(11, 5))
        for tool, points in sorted(series.items()):
            xs, ys = zip(*sorted(points), strict=True)
            colour, line = style(tool)
            ax.plot(xs, ys, marker="o", label=label(tool), color=colour, linestyle=line)
        ax.set_xscale("log")
        ax.set_xlabel("hosts in the request (one cold fan-out of `uname -a`)")
        ax.set_ylabel("results per second (end to end)")
        ax.set_title("Throughput vs fleet size (simulated fleet, 2-core box)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        fig.tight_layout()
        path = out_dir / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    present = [n for n in CDF_SCENARIOS if n in docs]
    if present:
        fig, axes = plt.subplots(1, len(present), figsize=(6 * len(present), 4.5), squeeze=False)
        for ax, name in zip(axes[0], present, strict=True):
            for run in docs[name].get("runs", []):
                cdf = run.get("latency_cdf_ms") or []
                if len(cdf) < 2:
                    continue
                fractions = [i / (len(cdf) - 1) for i in range(len(cdf))]
                tool = run["tool"]
                colour, line = style(tool)
                seconds = [v / 1000 for v in cdf]
                ax.plot(seconds, fractions, label=label(tool), color=colour, linestyle=line)
            ax.set_xscale("log")
            ax.set_xlabel("seconds from request submitted to the host's result")
            ax.set_ylabel("fraction of results")
            ax.set_title(name)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out_dir / "latency-cdf.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
