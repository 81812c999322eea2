"""Run one tool of a scenario on a running simulated fleet and turn what it did into a run record.

Peers run as `python -m bench.peers.NAME` under `measure.run_capped`; fleetrun runs end to end
through `bench.fleetrun_e2e`. Both give the same record: the tool, its settings, the summary of
`bench.stats.summarise`, and CPU/RSS per process (the fleet's own CPU too, for context: it
shares the two cores with everything else).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pstats
import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from bench import fleetrun_e2e
from bench.measure import run_capped, samples
from bench.peers.seed import database
from bench.scenarios import (
    ANSIBLE,
    CLUSH,
    FLEETRUN,
    LOOP,
    PSSH,
    SEED,
    SEED_PRELOAD,
    Run,
    Scenario,
)
from bench.stats import HostResult, summarise
from stack.simfleet import RunningFleet

PEER_MODULES = {
    LOOP: "bench.peers.plainloop",
    SEED: "bench.peers.seed",
    SEED_PRELOAD: "bench.peers.seed",
    PSSH: "bench.peers.pssh",
    ANSIBLE: "bench.peers.ansible",
    CLUSH: "bench.peers.clush",
}
LABELS = {
    FLEETRUN: "fleetrun (Kafka → collector → sink → PostgreSQL)",
    LOOP: "plain asyncssh loop + Semaphore",
    SEED: "seed script (gather, SQLite row+commit)",
    SEED_PRELOAD: "seed script, keys read once",
    PSSH: "parallel-ssh 2.16 (libssh2)",
    ANSIBLE: "ansible-core 2.19 ad-hoc raw",
    CLUSH: "clush 1.10 (OpenSSH)",
}


NO_LEDGER: Final = "@noledger"  # fleetrun with FLEETRUN_COLLECTOR_LEDGER=false
NO_LIVE: Final = "@nolive"  # fleetrun with FLEETRUN_COLLECTOR_LIVE_OUTPUT=false (no live code path)
SIGNED: Final = "@signed"  # fleetrun with every request signed, signatures required
# How many ledger transactions a measured run committed, and the writes they carried.
_TXN_SAMPLES: Final = (
    "fleetrun_collector_ledger_transaction_writes_count",
    "fleetrun_collector_ledger_transaction_writes_sum",
    "fleetrun_collector_ledger_start_wait_seconds_count",
    "fleetrun_collector_ledger_start_wait_seconds_sum",
    'fleetrun_collector_connections_total{kind="new"}',
)


def label(tool: str) -> str:
    """How the report names a tool (a `@healthy` suffix marks the reference runs)."""
    base, _, suffix = tool.partition("@")
    return LABELS.get(base, base) + (f" @{suffix}" if suffix else "")


def peer_argv(sc: Scenario, run: Run, fleet_dir: Path, out: Path, work: Path) -> list[str]:
    """The peer's command line for this scenario."""
    argv = [sys.executable, "-m", PEER_MODULES[run.tool], "--fleet-dir", str(fleet_dir)]
    argv += ["--out", str(out), "--work-dir", str(work), "--command", sc.command]
    argv += ["--rounds", str(sc.rounds_of(run)), "--warmup", str(sc.warmup_of(run))]
    argv += ["--concurrency", str(sc.concurrency_of(run))]
    argv += ["--timeout-s", str(sc.timeout_s), "--connect-timeout-s", str(sc.connect_timeout_s)]
    if run.tool == LOOP and sc.pooled_loop:
        argv.append("--pooled")
    if run.tool == SEED_PRELOAD:
        argv.append("--preload")
    if run.tool == ANSIBLE:
        argv += ["--forks", str(sc.concurrency_of(run))]
    return argv


def read_lines(out: Path) -> tuple[list[HostResult], dict[int, float], dict[str, float]]:
    """Host results, wall time per round (warm-up rounds <= 0) and the start mark."""
    results: list[HostResult] = []
    walls: dict[int, float] = {}
    mark: dict[str, float] = {}
    if not out.exists():
        return results, walls, mark
    for line in out.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line cut by the cap
        if "h" in item:
            results.append(HostResult(item["r"], item["h"], item["s"], item["ms"]))
        elif "round" in item:
            walls[int(item["round"])] = float(item["wall_s"])
        elif "mark" in item:
            mark = item["mark"]
    return results, walls, mark


def read_seed(db: Path) -> list[HostResult]:
    """The seed's rows of recorded rounds (request ids are `ROUND:uuid`)."""
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT request_id, host, status, submitted_at, finished_at FROM results"
        ).fetchall()
    out = []
    for request_id, host, status, submitted, finished in rows:
        rnd = int(str(request_id).split(":", 1)[0])
        if rnd >= 1:
            out.append(HostResult(rnd, host, status, (finished - submitted) * 1000))
    return out


def _base(sc: Scenario, run: Run, tool: str) -> dict[str, Any]:
    return {
        "tool": tool,
        "label": label(tool),
        "hosts": sc.hosts,
        "rounds": sc.rounds_of(run),
        "concurrency": sc.concurrency_of(run),
        "command": sc.command,
    }


def run_peer(
    sc: Scenario, run: Run, fleet: RunningFleet, work: Path, tool: str | None = None
) -> dict[str, Any]:
    """Run a peer (blocking) and return its record."""
    tool = tool or run.tool
    work.mkdir(parents=True, exist_ok=True)
    out = work / "results.jsonl"
    argv = peer_argv(sc, run, fleet.dir, out, work)
    capped, usage = run_capped(
        argv,
        cap_s=sc.cap_of(run),
        stdout=work / "stdout.log",
        stderr=work / "stderr.log",
        extra={"simfleet": fleet.pid},
    )
    results, walls, mark = read_lines(out)
    if run.tool in (SEED, SEED_PRELOAD):
        results = read_seed(database(work))
    rounds = sc.rounds_of(run)
    recorded = [w for r, w in walls.items() if r >= 1]
    finished = bool(recorded) and not capped.timed_out and capped.returncode == 0
    wall = sum(recorded) if finished else None
    record = _base(sc, run, tool) | summarise(
        results, rounds=rounds, hosts=[h.name for h in fleet.hosts], wall_s=wall
    )
    extra_cpu = 0.0
    extra_file = work / "extra.json"
    if extra_file.exists():
        extra_cpu = float(json.loads(extra_file.read_text()).get("extra_cpu_s", 0.0))
    cpu = capped.cpu_s - float(mark.get("cpu_s", 0.0)) + extra_cpu
    record["processes"] = {
        tool: {
            "cpu_s": round(cpu, 3),
            "peak_rss_mb": capped.peak_rss_mb,
            "rss_growth_mb": round(capped.peak_rss_mb - float(mark["rss_mb"]), 1)
            if "rss_mb" in mark and run.tool not in (ANSIBLE, CLUSH)
            else None,
            "max_single_rss_mb": capped.max_single_rss_mb,
        },
        "simfleet": usage.get("simfleet", {}),
    }
    warmup = [w for r, w in sorted(walls.items()) if r <= 0]
    if warmup:
        record["warmup_wall_s"] = round(warmup[0], 3)
    record["outcome"] = _outcome(capped.timed_out, capped.returncode)
    if record["outcome"] != "ok":
        record["note"] = _tail(work / "stderr.log")
    record["process_wall_s"] = capped.wall_s
    return record


def _outcome(timed_out: bool, returncode: int) -> str:
    if timed_out:
        return "timeout"
    return "ok" if returncode == 0 else f"exit {returncode}"


def _tail(path: Path, limit: int = 400) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return (lines[-1] if lines else "")[-limit:]


def collector_settings(sc: Scenario) -> dict[str, str]:
    """Collector settings for a fleet of this size (defaults otherwise)."""
    return {"FLEETRUN_COLLECTOR_MAX_CONNECTIONS": str(max(1000, sc.hosts + 100))}


async def run_fleetrun(
    sc: Scenario,
    run: Run,
    fleet: RunningFleet,
    env: Mapping[str, str],
    work: Path,
    tool: str | None = None,
) -> dict[str, Any]:
    """fleetrun end to end: start collector + sink, warm up, measure, tear down."""
    tool = tool or run.tool
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    options: dict[str, object] = {
        "timeout_s": sc.timeout_s,
        "connect_timeout_s": sc.connect_timeout_s,
        "concurrency": sc.concurrency_of(run),
    }
    rounds = sc.rounds_of(run)
    settings = collector_settings(sc)
    if tool.endswith(NO_LEDGER):
        settings = settings | {"FLEETRUN_COLLECTOR_LEDGER": "false"}
    if tool.endswith(NO_LIVE):
        settings = settings | {"FLEETRUN_COLLECTOR_LIVE_OUTPUT": "false"}
    sign = None
    if tool.endswith(SIGNED):
        required, sign = await asyncio.to_thread(fleetrun_e2e.request_signer, work)
        settings = settings | required
    # BENCH_PROFILE=1: the collector runs under cProfile; its top functions go in the record.
    profile = work / "collector.prof" if os.environ.get("BENCH_PROFILE") == "1" else None
    async with fleetrun_e2e.services(
        env, fleet.dir, work, settings=settings, profile_to=profile
    ) as svc:
        watch = {"collector": svc.collector_pid, "sink": svc.sink_pid}
        watch |= fleetrun_e2e.stack_pids() | {"simfleet": fleet.pid}
        common: dict[str, Any] = {
            "targets": ["@all"],
            "hosts": sc.hosts,
            "command": sc.command,
            "options": options,
        }
        warmup = None
        if sc.warmup_of(run):
            warmup = await fleetrun_e2e.run_requests(
                svc, count=sc.warmup_of(run), cap_s=sc.cap_of(run), watch={}, sign=sign, **common
            )
        before = await samples(svc.collector_port, *_TXN_SAMPLES)
        e2e = await fleetrun_e2e.run_requests(
            svc, count=rounds, cap_s=sc.cap_of(run), watch=watch, sign=sign, **common
        )
        after = await samples(svc.collector_port, *_TXN_SAMPLES)
    record = _base(sc, run, tool) | summarise(
        e2e.results, rounds=rounds, hosts=[h.name for h in fleet.hosts], wall_s=e2e.wall_s
    )
    record["processes"] = e2e.usage
    opened = after.get(_TXN_SAMPLES[4], 0.0) - before.get(_TXN_SAMPLES[4], 0.0)
    record["ssh_connections_opened"] = int(opened)
    if e2e.phases_ms is not None:
        record["phases_ms"] = e2e.phases_ms
    txns = after.get(_TXN_SAMPLES[0], 0.0) - before.get(_TXN_SAMPLES[0], 0.0)
    if txns:
        writes = after.get(_TXN_SAMPLES[1], 0.0) - before.get(_TXN_SAMPLES[1], 0.0)
        starts = after.get(_TXN_SAMPLES[2], 0.0) - before.get(_TXN_SAMPLES[2], 0.0)
        waited = after.get(_TXN_SAMPLES[3], 0.0) - before.get(_TXN_SAMPLES[3], 0.0)
        record["ledger"] = {
            "transactions": int(txns),
            "writes_per_transaction": round(writes / txns, 2),
            "start_wait_ms": round(1000 * waited / starts, 1) if starts else None,
        }
    if warmup is not None and warmup.wall_s is not None:
        record["warmup_wall_s"] = round(warmup.wall_s, 3)
    record["outcome"] = "ok" if e2e.wall_s is not None else "timeout"
    record["settings"] = settings | {f"request.{k}": str(v) for k, v in options.items()}
    if profile is not None and profile.exists():
        record["collector_profile"] = top_functions(profile)
    return record


def top_functions(profile: Path, limit: int = 30) -> str:
    """The collector's top functions by own time (cProfile), as text for the report."""
    out = io.StringIO()
    pstats.Stats(str(profile), stream=out).strip_dirs().sort_stats("tottime").print_stats(limit)
    return out.getvalue()


async def run_tool(
    sc: Scenario,
    run: Run,
    fleet: RunningFleet,
    env: Mapping[str, str],
    work: Path,
    tool: str | None = None,
) -> dict[str, Any]:
    """Run one tool; a harness failure becomes a record with outcome `error`, not a crash."""
    try:
        if run.tool == FLEETRUN:
            return await run_fleetrun(sc, run, fleet, env, work, tool)
        return await asyncio.to_thread(run_peer, sc, run, fleet, work, tool)
    except Exception as exc:
        record = _base(sc, run, tool or run.tool)
        record |= {"outcome": "error", "note": f"{type(exc).__name__}: {exc}"[:400]}
        return record
