"""Build bench/REPORT.md (one table, the targets, notes) and the plots from bench/results/*.json.

    python -m bench.report [--day YYYY-MM-DD]

For every scenario the newest `<date>-<scenario>.json` is used, so a partial re-run (`--only`)
updates its rows and keeps the others. The micro-benchmarks' own markdown (sink, codec,
collector) is included as written by their authors' scripts. Table building is pure (tested).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.scenarios import (
    FLEETRUN,
    LEDGER_COST_RATIO,
    LEDGER_COST_SCENARIOS,
    LIVE_COST_RATIO,
    LIVE_COST_SCENARIOS,
    LOOP,
    SEED,
    SEED_PRELOAD,
    SIGNED_COST_RATIO,
    SIGNED_COST_SCENARIOS,
    scenarios,
)
from bench.stats import ratio
from bench.tools import NO_LEDGER, NO_LIVE, SIGNED

REPORT = Path(__file__).parent / "REPORT.md"
PLOTS_DIR = Path(__file__).parent / "plots"
DATED = re.compile(r"^(\d{4}-\d{2}-\d{2})-(.+)\.json$")
MICRO = ("sink", "codec", "collector", "shards", "admission")
COLUMNS = (
    "scenario",
    "tool",
    "hosts × rounds",
    "wall s",
    "results/s",
    "p50 / p99 ms",
    "CPU s",
    "peak RSS MB",
    "failures",
    "complete",
    "× loop",
    "× seed",
)
# Targets of the benchmark issue (see the report's "Targets" section).
WARM_RATIO, SEED_RATIO, HANG_SHARE = 0.8, 3.0, 0.2
RSS_5000_MB, GROWTH_1GIB_MB = 300.0, 32.0


def newest(results_dir: Path, names: Iterable[str]) -> dict[str, Path]:
    """The newest `<date>-<name>.json` for each name that has one."""
    found: dict[str, tuple[str, Path]] = {}
    wanted = set(names)
    for path in results_dir.glob("*.json"):
        m = DATED.match(path.name)
        if m and m.group(2) in wanted and m.group(1) >= found.get(m.group(2), ("", path))[0]:
            found[m.group(2)] = (m.group(1), path)
    return {name: path for name, (_, path) in found.items()}


def _num(value: object, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _reference_rate(runs: Sequence[Mapping[str, Any]], tool: str) -> float | None:
    for run in runs:
        if run.get("tool") == tool and run.get("outcome") == "ok":
            rate = run.get("results_per_s")
            return float(rate) if rate is not None else None
    return None


def cpu_cell(processes: Mapping[str, Mapping[str, Any]], tool: str) -> str:
    """Total CPU of the tool's own processes; fleetrun's split per process."""
    if tool.startswith(FLEETRUN):
        parts = [
            (n, float(processes[n]["cpu_s"]))
            for n in ("collector", "sink", "kafka", "postgres")
            if n in processes and processes[n].get("cpu_s") is not None
        ]
        total = sum(v for _, v in parts)
        split = " + ".join(f"{n[:4]} {v:.1f}" for n, v in parts)
        return f"{total:.1f} ({split})" if parts else "–"
    own = processes.get(tool, {})
    return _num(own.get("cpu_s"), 1)


def rss_cell(processes: Mapping[str, Mapping[str, Any]], tool: str) -> str:
    """Peak RSS of the tool's main process(es), with growth during the run when known."""
    names = ("collector", "sink") if tool.startswith(FLEETRUN) else (tool,)
    cells = []
    for name in names:
        p = processes.get(name)
        if not p:
            continue
        cell = f"{p.get('peak_rss_mb', 0):,.0f}"
        growth = p.get("rss_growth_mb")
        if growth is not None:
            cell += f" (+{growth:,.0f})"
        cells.append(f"{name[:4]} {cell}" if tool.startswith(FLEETRUN) else cell)
    return " / ".join(cells) or "–"


def wall_cell(run: Mapping[str, Any]) -> str:
    """Wall seconds; for one-round runs after a warm-up, the first (cold) request's too."""
    cell = _num(run.get("wall_s"), 2)
    if run.get("rounds") == 1 and run.get("warmup_wall_s") is not None:
        cell += f" (1st {_num(run['warmup_wall_s'], 2)})"
    return cell


def failures_cell(run: Mapping[str, Any]) -> str:
    failures = run.get("failures") or {}
    text = ", ".join(f"{k} {v}" for k, v in failures.items()) or "0"
    if run.get("outcome") not in (None, "ok"):
        text += f"; **{run['outcome']}**"
    return text


def complete_cell(run: Mapping[str, Any]) -> str:
    if run.get("complete"):
        return "yes"
    missing, dup = run.get("missing"), run.get("duplicates")
    return f"no ({_num(missing)} missing, {_num(dup)} dup)"


def rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """The table rows of one scenario document, ratios against its own loop and seed runs."""
    runs = doc.get("runs", [])
    loop, seed = _reference_rate(runs, LOOP), _reference_rate(runs, SEED)
    loop_ref = _reference_rate(runs, f"{LOOP}@healthy")
    out = []
    for run in runs:
        tool = str(run["tool"])
        rate = run.get("results_per_s")
        healthy = tool.endswith("@healthy")
        lat = run.get("latency_ms") or {}
        few = (run.get("hosts") or 0) * (run.get("rounds") or 0) < 10  # a rate of 1 is noise
        processes = run.get("processes") or {}
        out.append(
            [
                str(doc.get("scenario", "")),
                str(run.get("label", tool)),
                f"{_num(run.get('hosts'))} × {_num(run.get('rounds'))}",
                wall_cell(run),
                _num(rate, 0),
                f"{_num(lat.get('p50'), 0)} / {_num(lat.get('p99'), 0)}",
                cpu_cell(processes, tool.split("@")[0]),
                rss_cell(processes, tool.split("@")[0]),
                failures_cell(run),
                complete_cell(run),
                _x(None if few else ratio(rate, loop_ref if healthy else loop)),
                _x(None if healthy or few else ratio(rate, seed)),
            ]
        )
    return out


def sink_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """Rows for bench_sink's backlog drain (its JSON as its author writes it), when present."""
    out = []
    sink, naive = doc.get("sink"), doc.get("naive")
    rows_total = doc.get("rows")
    if isinstance(sink, Mapping):
        out.append(
            [
                f"sink-backlog-{_num(rows_total)}",
                "fleetrun sink, 1 process",
                f"{_num(rows_total)} rows",
                _num(sink.get("seconds_from_start"), 2),
                _num(sink.get("rows_per_s_from_start"), 0),
                "–",
                _num(sink.get("sink_cpu_s"), 1),
                _num(sink.get("peak_rss_mib"), 0),
                "–",
                "–",
                "–",
                _x(ratio(sink.get("rows_per_s_from_start"), (naive or {}).get("rows_per_s"))),
            ]
        )
    if isinstance(naive, Mapping):
        out.append(
            [
                f"sink-backlog-{_num(rows_total)}",
                "naive INSERT per row, autocommit (seed's way)",
                f"{_num(naive.get('rows'))} rows",
                _num(naive.get("seconds"), 2),
                _num(naive.get("rows_per_s"), 0),
                *["–"] * 6,
                "1.00×",
            ]
        )
    return out


def table(all_rows: Sequence[Sequence[str]]) -> str:
    """A markdown table with the report's columns."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in all_rows]
    return "\n".join(lines)


def _cpu_per(run: Mapping[str, Any]) -> float | None:
    """The collector's CPU seconds per result of a run (less noisy than a rate on a busy box)."""
    cpu = run.get("processes", {}).get("collector", {}).get("cpu_s")
    results = run.get("results")
    return cpu / results if cpu and results else None


def _run(doc: Mapping[str, Any] | None, tool: str) -> Mapping[str, Any] | None:
    for run in (doc or {}).get("runs", []):
        if run.get("tool") == tool:
            return dict(run)
    return None


def verdict(ok: bool | None) -> str:
    """A target's verdict cell."""
    return "not measured" if ok is None else "met" if ok else "**missed**"


def _cost_row(
    target: str,
    on: Mapping[str, Any] | None,
    off: Mapping[str, Any] | None,
    at_least: float,
    off_name: str,
) -> tuple[str, str, str] | None:
    """A feature's cost as a target row: its rate against the same run without it, and the
    collector's CPU per result beside (None unless both runs are there)."""
    if not (on and off):
        return None
    r = ratio(on.get("results_per_s"), off.get("results_per_s"))
    return (
        target,
        f"{_x(r)} ({_num(on.get('results_per_s'), 0)} vs "
        f"{_num(off.get('results_per_s'), 0)} results/s); collector CPU per result "
        f"{_x(ratio(_cpu_per(on), _cpu_per(off)))} {off_name}",
        verdict(None if r is None else r >= at_least),
    )


def targets(docs: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target of the issue that this run measured."""
    out: list[tuple[str, str, str]] = []

    warm = docs.get("warm-500x50")
    f, loop = _run(warm, FLEETRUN), _run(warm, LOOP)
    if f and loop:
        r = ratio(f.get("results_per_s"), loop.get("results_per_s"))
        out.append(
            (
                f"warm pool: fleetrun ≥ {WARM_RATIO}× plain loop",
                f"{_x(r)} ({_num(f.get('results_per_s'), 0)} vs "
                f"{_num(loop.get('results_per_s'), 0)} results/s)",
                verdict(None if r is None else r >= WARM_RATIO),
            )
        )
    for name in LEDGER_COST_SCENARIOS:
        doc = docs.get(name)
        on, off, lp = _run(doc, FLEETRUN), _run(doc, FLEETRUN + NO_LEDGER), _run(doc, LOOP)
        if on and off:
            r = ratio(on.get("results_per_s"), off.get("results_per_s"))
            r_loop = ratio(on.get("results_per_s"), (lp or {}).get("results_per_s"))
            out.append(
                (
                    f"{name}: ledger on ≥ {LEDGER_COST_RATIO}× off, and ≥ 0.9× the plain loop",
                    f"{_x(r)} ({_num(on.get('results_per_s'), 0)} vs "
                    f"{_num(off.get('results_per_s'), 0)} results/s); × loop {_x(r_loop)}; "
                    f"collector CPU per result {_x(ratio(_cpu_per(on), _cpu_per(off)))} off's",
                    verdict(
                        None
                        if r is None or r_loop is None
                        else r >= LEDGER_COST_RATIO and r_loop >= 0.9
                    ),
                )
            )
    for name in LIVE_COST_SCENARIOS:
        doc = docs.get(name)
        row = _cost_row(
            f"{name}: streaming off ≥ {LIVE_COST_RATIO}× without live output's code path",
            _run(doc, FLEETRUN),
            _run(doc, FLEETRUN + NO_LIVE),
            LIVE_COST_RATIO,
            "off's",
        )
        out += [row] if row else []
    for name in SIGNED_COST_SCENARIOS:
        doc = docs.get(name)
        row = _cost_row(
            f"{name}: signed requests ≥ {SIGNED_COST_RATIO}× unsigned",
            _run(doc, FLEETRUN + SIGNED),
            _run(doc, FLEETRUN),
            SIGNED_COST_RATIO,
            "unsigned's",
        )
        out += [row] if row else []
    for name in ("fanout-1000", "warm-500x50", "hang-1000"):
        doc = docs.get(name)
        f, seed, pre = _run(doc, FLEETRUN), _run(doc, SEED), _run(doc, SEED_PRELOAD)
        if f and seed:
            r = ratio(f.get("results_per_s"), seed.get("results_per_s"))
            whole = bool(f.get("complete"))
            shown = _x(r) if r is not None else f"seed did not finish ({seed.get('outcome')})"
            if pre and pre.get("results_per_s"):
                vs_pre = ratio(f.get("results_per_s"), pre["results_per_s"])
                shown += f" (vs the seed with keys read once: {_x(vs_pre)})"
            ok = (r is None or r >= SEED_RATIO) and whole
            out.append(
                (
                    f"{name}: fleetrun ≥ {SEED_RATIO:.0f}× the seed, nothing lost or doubled",
                    f"{shown}; fleetrun complete: {f.get('complete')}, duplicates "
                    f"{f.get('duplicates')}",
                    verdict(ok),
                )
            )
    hang = docs.get("hang-1000")
    f, ref = _run(hang, FLEETRUN), _run(hang, f"{FLEETRUN}@healthy")
    loop = _run(hang, LOOP) or {}
    timeout = float((hang or {}).get("params", {}).get("timeout_s", 5.0))
    for key, which in (("wall_s", "warm pool"), ("warmup_wall_s", "first request, cold")):
        if f and ref and f.get(key) is not None and ref.get(key) is not None:
            bound = timeout + HANG_SHARE * float(ref[key])
            floor = f"; plain loop, same deadlines: {_num(loop.get(key), 2)} s"
            out.append(
                (
                    f"5% dead/hanging ({which}): total ≤ timeout + 20% of the healthy run",
                    f"{f[key]:.2f} s vs bound {bound:.2f} s (healthy {ref[key]:.2f} s){floor}",
                    verdict(float(f[key]) <= bound),
                )
            )
    for name in ("fanout-5000", "fanout-1000"):
        coll = ((_run(docs.get(name), FLEETRUN) or {}).get("processes") or {}).get("collector")
        if coll:
            peak = float(coll["peak_rss_mb"])
            hosts = name.split("-")[1]
            measured = name == "fanout-5000"
            out.append(
                (
                    f"collector peak RSS ≤ {RSS_5000_MB:.0f} MB at 5,000 hosts",
                    f"{peak:.0f} MB at {hosts} hosts",
                    verdict(peak <= RSS_5000_MB) if measured else "5,000 hosts: bench-full",
                )
            )
            break
    coll = ((_run(docs.get("huge-1gib"), FLEETRUN) or {}).get("processes") or {}).get("collector")
    if coll:
        growth = float(coll["rss_growth_mb"])
        out.append(
            (
                f"collector RSS growth ≤ {GROWTH_1GIB_MB:.0f} MB for a 1 GiB output",
                f"{growth:.1f} MB",
                verdict(growth <= GROWTH_1GIB_MB),
            )
        )
    return out


def markdown(
    docs: Mapping[str, Mapping[str, Any]],
    summary: Mapping[str, Any] | None,
    micro: Mapping[str, str],
    plots: Sequence[Path],
    repeated: Mapping[str, str] | None = None,
) -> str:
    """The whole REPORT.md."""
    order = [sc.name for sc in scenarios(full=True)]
    present = [n for n in order if n in docs]
    first = docs[present[0]] if present else {}
    m = (summary or first).get("machine", {})
    lines = [
        "# fleetrun benchmarks: fleetrun against its peers, side by side",
        "",
        "Generated by `python -m bench.report` from bench/results/*.json (`make bench`; "
        "`make bench-full` adds 5,000 hosts and the 1,000,000-row sink backlog). "
        f"Machine: {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, Python {m.get('python')}; "
        "Kafka, PostgreSQL, the simulated fleet and every tool share it.",
        "",
    ]
    if summary:
        lines += [
            f"Last run: {summary.get('date')} ({summary.get('mode')}), "
            f"{_num(summary.get('total_s'), 0)} s; load average before "
            f"{summary.get('load_before')}, after {summary.get('load_after')}. "
            + str(summary.get("note", "")),
            "",
        ]
    lines += [
        "Columns: wall = first request submitted → last result stored (fleetrun: the last row "
        "committed in PostgreSQL; peers: their own end of round, summed over recorded "
        "rounds); latency = a host's result time minus its request's submission; CPU = the "
        "tool's processes during the recorded rounds (fleetrun: collector + sink + Kafka + "
        "PostgreSQL); RSS = peak, sampled every 50–100 ms (+ growth during the run where "
        "known); complete = exactly one result per (request, target); × loop / × seed = "
        "results/s against the plain asyncssh loop / the seed script of the same scenario.",
        "",
        table(
            [row for name in present for row in rows(docs[name])] + sink_rows(docs.get("sink", {}))
        ),
        "",
        "## Targets",
        "",
        "Verdicts of the last run alone; one run swings by ±15-30% here, so the ratio targets "
        "are judged on the repeated runs below where there are some.",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *[f"| {t} | {m_} | {v} |" for t, m_, v in targets(docs)],
        "",
    ]
    for name, text in (repeated or {}).items():
        lines += [f"## Repeated runs: {name} (`python -m bench.reps`)", "", _demote(text), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    lines += ["## Scenarios", ""]
    for name in present:
        doc = docs[name]
        lines.append(f"- **{name}** — {doc.get('title')}; params {json.dumps(doc['params'])}.")
        lines += [f"  {note}" for note in doc.get("notes", [])]
        for run in doc.get("runs", []):
            if run.get("outcome") != "ok" and run.get("note"):
                lines.append(f"  `{run['tool']}` {run['outcome']}: {run['note']}")
    lines.append("")
    for name, text in micro.items():
        lines += [f"## Micro-benchmark: {name}", "", _demote(text), ""]
    return "\n".join(lines)


def _demote(text: str) -> str:
    """Headings of an included markdown file, two levels down (under our `##` heading)."""
    return re.sub(r"^(#+) ", r"##\1 ", text.strip(), flags=re.MULTILINE)


def build(results_dir: Path) -> list[Path]:
    """Write REPORT.md and the plots; returns the paths written."""
    names = [sc.name for sc in scenarios(full=True)] + ["sink"]
    docs = {n: json.loads(p.read_text()) for n, p in newest(results_dir, names).items()}
    summary_path = newest(results_dir, ["run"]).get("run")
    summary = json.loads(summary_path.read_text()) if summary_path else None
    micro = {}
    for name in MICRO:
        md = newest(results_dir, [name]).get(name)
        if md is not None and md.with_suffix(".md").exists():
            micro[name] = md.with_suffix(".md").read_text()
    repeated = {}
    for name in ("fanout-100", "fanout-1000", "warm-500x50"):
        found = sorted((results_dir / "reps").glob(f"*-{name}.md"))
        if found:
            repeated[name] = found[-1].read_text()
    from bench import plots

    written = plots.draw(docs, PLOTS_DIR)
    REPORT.write_text(markdown(docs, summary, micro, written, repeated))
    return [REPORT, *written]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    for path in build(args.results):
        print(path)


if __name__ == "__main__":
    main()
