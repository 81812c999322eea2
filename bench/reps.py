"""Ratios over repeated runs: the median of each tool's rate across several `bench.run` files.

    python -m bench.reps bench/results/reps/warm-500x50-*.json [--out FILE.md]

One run of a scenario on this 2-core box swings by ±30% (the fleet, Kafka, PostgreSQL and the
tool share the cores), and later runs on one fleet tend to be faster: measure several times,
in both orders (`bench.run --reverse`), and compare medians. For each ratio the report names
(ledger on/off, live output on/off, signed/unsigned, fleetrun/plain loop) it prints the ratio
of the medians and the ratio of each run, side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from bench.scenarios import FLEETRUN, LOOP
from bench.tools import NO_LEDGER, NO_LIVE, SIGNED

# (name, numerator tool, denominator tool)
RATIOS: Final = (
    ("ledger on / off", FLEETRUN, FLEETRUN + NO_LEDGER),
    ("live output on / its code path off", FLEETRUN, FLEETRUN + NO_LIVE),
    ("signed / unsigned", FLEETRUN + SIGNED, FLEETRUN),
    ("fleetrun / plain loop", FLEETRUN, LOOP),
)


def _rates(doc: Mapping[str, Any]) -> dict[str, float]:
    return {
        run["tool"]: float(run["results_per_s"])
        for run in doc.get("runs", [])
        if run.get("results_per_s") and run.get("complete")
    }


def summarise(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median rate per tool and the ratios, over `docs` (one scenario's runs)."""
    per_run = [_rates(doc) for doc in docs]
    tools = sorted({tool for rates in per_run for tool in rates})
    medians = {tool: statistics.median(r[tool] for r in per_run if tool in r) for tool in tools}
    ratios = {}
    for name, top, bottom in RATIOS:
        if top in medians and bottom in medians:
            ratios[name] = {
                "of_medians": round(medians[top] / medians[bottom], 3),
                "per_run": [
                    round(r[top] / r[bottom], 3) for r in per_run if top in r and bottom in r
                ],
            }
    return {
        "scenario": docs[0].get("scenario") if docs else None,
        "runs": len(docs),
        "orders": [doc.get("order") for doc in docs],
        "rates": {tool: [r.get(tool) for r in per_run] for tool in tools},
        "median_rate": {tool: round(rate, 1) for tool, rate in medians.items()},
        "ratios": ratios,
    }


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a small report: rates per run, medians, ratios."""
    lines = [f"# {summary['scenario']}: {summary['runs']} runs, medians", ""]
    lines += ["| tool | results/s per run | median |", "|---|---|---|"]
    for tool, rates in summary["rates"].items():
        shown = ", ".join("—" if r is None else f"{r:,.0f}" for r in rates)
        lines.append(f"| {tool} | {shown} | {summary['median_rate'][tool]:,.0f} |")
    lines += ["", "| ratio | of the medians | per run |", "|---|---|---|"]
    for name, ratio in summary["ratios"].items():
        per_run = ", ".join(f"{r:.2f}" for r in ratio["per_run"])
        lines.append(f"| {name} | {ratio['of_medians']:.2f}× | {per_run} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="bench.run JSON files, one scenario")
    parser.add_argument("--out", type=Path, help="write the markdown here (and .json beside)")
    args = parser.parse_args()
    docs = [json.loads(path.read_text()) for path in args.files]
    summary = summarise(docs)
    text = markdown(summary)
    if args.out is not None:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(text, end="")


if __name__ == "__main__":
    main()
