"""The benchmark harness: fleetrun against its peers, side by side, in one run.

    python -m bench.run [--full] [--only NAME ...] [--no-micro] [--no-report]

Needs the local stack (`python -m stack up`; `make bench` starts it). For each scenario of
bench/scenarios.py it starts a simulated fleet (stack.simfleet, addresses 127.2.0.0/16, port
2200), runs every tool on it in turn — each under a wall-clock cap that stops it and records
"timeout" with what it finished — and writes bench/results/<date>-<scenario>.json. Then it runs
the sink, codec and collector micro-benchmarks (their own JSON/markdown), and bench/report.py
builds bench/REPORT.md and the plots.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.measure import RESULTS_DIR, load_average, run_capped, write_json
from bench.scenarios import (
    FLEETRUN,
    LEDGER_COST_SCENARIOS,
    LIVE_COST_SCENARIOS,
    SIGNED_COST_SCENARIOS,
    Run,
    Scenario,
    micro_benchmarks,
    scenarios,
)
from bench.tools import NO_LEDGER, NO_LIVE, SIGNED, run_tool
from stack.config import StackConfig
from stack.env import StackEnv
from stack.simfleet import RunningFleet, running_fleet

REPO_ROOT = Path(__file__).resolve().parents[1]
FLEET_BASE_ADDRESS = "127.2.0.1"  # this harness's own /16: others' tests use 127.1.x
FLEET_PORT = 2200


def stack_env() -> dict[str, str]:
    """The settings `python -m stack up` wrote (Kafka bootstrap, PostgreSQL DSN, ...)."""
    path = StackConfig.from_env().env_file
    try:
        return StackEnv.load(path).values
    except FileNotFoundError:
        raise SystemExit(f"bench: no stack env file at {path}; run `python -m stack up`") from None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _brief(record: dict[str, Any]) -> str:
    return (
        f"{record['tool']}: {record.get('outcome')} wall={record.get('wall_s')}s "
        f"rate={record.get('results_per_s')}/s results={record.get('results')} "
        f"failures={record.get('failures')} complete={record.get('complete')}"
    )


async def _on_fleet(
    sc: Scenario,
    profile: str,
    runs: Sequence[tuple[Run, str]],
    env: dict[str, str],
    work: Path,
) -> list[dict[str, Any]]:
    records = []
    async with running_fleet(
        sc.hosts,
        work / f"fleet-{profile.replace('=', '').replace(',', '-')}",
        profile=profile,
        seed=1,
        base_address=FLEET_BASE_ADDRESS,
        port=FLEET_PORT,
    ) as fleet:
        for run, tool in runs:
            await _settle(fleet)
            t0 = time.perf_counter()
            record = await run_tool(sc, run, fleet, env, work / tool.replace("@", "-"), tool)
            record["profile"] = profile
            record["harness_s"] = round(time.perf_counter() - t0, 1)
            log(f"{sc.name} {_brief(record)} ({record['harness_s']} s)")
            records.append(record)
    return records


async def _settle(fleet: RunningFleet, timeout_s: float = 30.0) -> None:
    """Wait until the previous tool's connections to the fleet are gone (bounded)."""
    try:
        await fleet.wait_stats(
            lambda s: int(s["counters"].get("connections_active", 0)) == 0, timeout_s
        )
    except Exception as exc:
        log(f"fleet still has connections after {timeout_s}s: {exc}")


async def run_scenario(
    sc: Scenario,
    env: dict[str, str],
    work: Path,
    tools: Sequence[str] = (),
    reverse: bool = False,
    rotate: int = 0,
) -> dict[str, Any]:
    """Every tool of one scenario (and its healthy reference runs), as one JSON document."""
    started = time.perf_counter()
    doc: dict[str, Any] = {
        "scenario": sc.name,
        "title": sc.title,
        "date": date.today().isoformat(),
        "machine": machine(),
        "load_before": load_average(),
        "params": {
            "hosts": sc.hosts,
            "profile": sc.profile,
            "command": sc.command,
            "rounds": sc.rounds,
            "warmup": sc.warmup,
            "concurrency": sc.concurrency,
            "timeout_s": sc.timeout_s,
            "connect_timeout_s": sc.connect_timeout_s,
            "cap_s": sc.cap_s,
        },
        "notes": list(sc.notes),
        "runs": [],
    }
    runs = [r for r in sc.runs if not tools or r.tool in tools]
    if sc.reference_profile is not None:
        refs = [(r, f"{r.tool}@healthy") for r in runs if r.tool in sc.reference_tools]
        doc["runs"] += await _on_fleet(sc, sc.reference_profile, refs, env, work)
    measured = [(r, r.tool) for r in runs]
    if sc.name in LEDGER_COST_SCENARIOS:
        # The ledger's cost, side by side in one run: fleetrun with it off, just before.
        at = next((i for i, (r, _) in enumerate(measured) if r.tool == FLEETRUN), None)
        if at is not None:
            measured.insert(at, (measured[at][0], f"{FLEETRUN}{NO_LEDGER}"))
    if sc.name in LIVE_COST_SCENARIOS:
        at = next((i for i, (r, t) in enumerate(measured) if t == FLEETRUN), None)
        if at is not None:
            measured.insert(at, (measured[at][0], f"{FLEETRUN}{NO_LIVE}"))
    if sc.name in SIGNED_COST_SCENARIOS:
        at = next((i for i, (r, t) in enumerate(measured) if t == FLEETRUN), None)
        if at is not None:
            measured.insert(at + 1, (measured[at][0], f"{FLEETRUN}{SIGNED}"))
    if reverse:
        measured.reverse()
    if measured and rotate:
        shift = rotate % len(measured)
        measured = measured[shift:] + measured[:shift]
    doc["order"] = [tool for _, tool in measured]
    doc["runs"] += await _on_fleet(sc, sc.profile, measured, env, work)
    doc["load_after"] = load_average()
    doc["scenario_s"] = round(time.perf_counter() - started, 1)
    return doc


def run_micro(name: str, module_argv: list[str], cap_s: float, work: Path) -> dict[str, Any]:
    """Run another engineer's benchmark module as it is; its own files land in bench/results."""
    work.mkdir(parents=True, exist_ok=True)
    if not (REPO_ROOT / (module_argv[0].replace(".", "/") + ".py")).exists():
        return {"name": name, "outcome": "missing", "argv": module_argv}
    capped, _ = run_capped(
        [sys.executable, "-m", *module_argv],
        cap_s=cap_s,
        cwd=REPO_ROOT,
        stdout=work / f"{name}.out",
        stderr=work / f"{name}.err",
    )
    outcome = "timeout" if capped.timed_out else "ok" if capped.returncode == 0 else "failed"
    return {
        "name": name,
        "argv": module_argv,
        "outcome": outcome,
        "wall_s": capped.wall_s,
        "log": str(work / f"{name}.err"),
    }


def write(doc: dict[str, Any], name: str) -> Path:
    return write_json(name, doc["date"], doc, indent=1)


def _selected(name: str, only: Sequence[str]) -> bool:
    return not only or any(name.startswith(o) for o in only)


async def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="add 5,000 hosts, the 1M-row backlog")
    p.add_argument("--only", action="append", default=[], help="scenario name prefix (repeat)")
    p.add_argument("--tool", action="append", default=[], help="only this tool (repeat)")
    p.add_argument("--no-micro", action="store_true", help="skip sink/codec/collector benches")
    p.add_argument("--no-report", action="store_true", help="do not rebuild REPORT.md")
    p.add_argument("--keep-work", action="store_true", help="keep logs and fleets in /tmp")
    p.add_argument(
        "--reverse",
        action="store_true",
        help="run each scenario's tools in reverse order (later runs on a fleet tend to be faster:"
        " repeat with and without to cancel it out)",
    )
    p.add_argument(
        "--rotate",
        type=int,
        default=0,
        metavar="K",
        help="start each scenario's tools at the K-th (repeat with K = 0, 1, … so every tool runs"
        " in every position once: reversing alone keeps the middle one in the middle)",
    )
    args = p.parse_args(argv)
    env = stack_env()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="fleetrun-bench-"))
    log(f"work dir {work}; load {load_average()}")
    summary: dict[str, Any] = {
        "date": date.today().isoformat(),
        "mode": "full" if args.full else "quick",
        "machine": machine(),
        "load_before": load_average(),
        "scenarios": [],
        "micro": [],
    }
    try:
        for sc in scenarios(args.full):
            if _selected(sc.name, args.only):
                log(f"scenario {sc.name}: {sc.title}")
                doc = await run_scenario(
                    sc, env, work / sc.name, args.tool, args.reverse, args.rotate
                )
                log(f"wrote {write(doc, sc.name)} ({doc['scenario_s']} s)")
                summary["scenarios"].append(sc.name)
        if not args.no_micro:
            for name, module_argv, cap_s in micro_benchmarks(args.full):
                if _selected(name, args.only):
                    log(f"micro-benchmark {name}: python -m {' '.join(module_argv)}")
                    result = await asyncio.to_thread(
                        run_micro, name, module_argv, cap_s, work / "micro"
                    )
                    log(f"{name}: {result['outcome']} ({result.get('wall_s')} s)")
                    summary["micro"].append(result)
    finally:
        summary["load_after"] = load_average()
        summary["total_s"] = round(time.perf_counter() - started, 1)
        if not args.only and not args.tool:  # the report's "last run" is a whole run only
            write(summary, "run")
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    if not args.no_report:
        paths = report.build(RESULTS_DIR)
        log("wrote " + ", ".join(str(p) for p in paths))
    log(f"done in {summary['total_s']} s")
    return 0


def cli() -> int:
    """Entry point: the harness runs on uvloop like the services."""
    import uvloop

    return int(uvloop.run(main()))


if __name__ == "__main__":
    sys.exit(cli())
