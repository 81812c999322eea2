"""The fault suite that counts.

    python -m bench.faults [--only NAME ...] [--trials N] [--hosts 200] [--seed N]

Needs the local stack (`make faults` starts it). Starts a simulated fleet of `--hosts` hosts,
then for each fault a collector and a sink of its own, injects the fault (random points from a
seeded generator; the seed is printed), waits for everything to settle and counts: results
lost, doubled, commands run twice, `outcome_unknown`, remote orphans, recovery time. Writes
bench/results/<date>-faults.json and bench/FAULTS.md (or into --out-dir), and exits 1 when a
fault row is not all zeros, naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from bench.faults import report
from bench.faults.count import Row, Tally
from bench.faults.ctx import fault_ctx
from bench.faults.faults import FAULTS
from bench.faults.world import world
from stack.env import StackEnv
from stack.simfleet import running_fleet

BENCH_DIR = Path(__file__).resolve().parents[1]
FLEET_ADDRESS = "127.41.0.1"  # not the benchmarks' 127.2.0.0/16; ports are free ones (port=0)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", choices=sorted(FAULTS), help="run only this fault")
    p.add_argument("--trials", type=int, help="trials per fault (default: each fault's own)")
    p.add_argument("--hosts", type=int, default=200, help="simulated hosts (default 200)")
    p.add_argument("--seed", type=int, help="seed of the random fault points (default: random)")
    p.add_argument("--base-address", default=FLEET_ADDRESS, help="the fleet's first address")
    p.add_argument("--out-dir", type=Path, help="write the JSON and FAULTS.md here instead")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="a setting for both services, e.g. FLEETRUN_COLLECTOR_LEDGER=false (a control run "
        "that shows what the suite counts without the ledger)",
    )
    return p.parse_args(argv)


async def run_fault(
    name: str,
    stack: StackEnv,
    fleet: Any,
    work: Path,
    seed: int,
    trials: int,
    settings: dict[str, str],
) -> Row:
    """One fault in a world of its own; a harness failure becomes a failing row."""
    fault = FAULTS[name]
    rng = random.Random(f"{seed}:{name}")  # fault points, not secrets
    print(f"faults: {name}: {trials} trial(s)", flush=True)
    try:
        async with (
            world(
                stack,
                fleet,
                work / name,
                name,
                relayed=fault.relayed,
                sink_settings=fault.sink_settings,
                settings=settings,
            ) as w,
            fault_ctx(w, rng) as ctx,
        ):
            trial_list = await fault.run(ctx, trials)
            tally = await ctx.settle_and_count()
            row = Row(name, fault.title, trial_list, tally, ctx.checks)
    except Exception as exc:
        traceback.print_exc()
        row = Row(name, fault.title, [], Tally(), {}, error=f"{type(exc).__name__}: {exc}"[:300])
    print(f"faults: {name}: {row.as_json() | {'problems': row.tally.problems[:3]}}", flush=True)
    return row


async def main_async(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    print(f"faults: seed {seed} (replay with --seed {seed})", flush=True)
    stack = StackEnv.load()
    names = args.only or list(FAULTS)
    settings = dict(item.partition("=")[::2] for item in args.set)
    work = Path(tempfile.mkdtemp(prefix="fleetrun-faults-"))
    print(f"faults: logs in {work}", flush=True)
    started = time.monotonic()
    rows: list[Row] = []
    async with running_fleet(
        args.hosts,
        work / "simfleet",
        seed=seed,
        base_address=args.base_address,
        port=0,
        max_connections=args.hosts * 3,
    ) as fleet:
        for name in names:
            trials = args.trials or FAULTS[name].trials
            rows.append(await run_fault(name, stack, fleet, work, seed, trials, settings))
    docs = []
    for row in rows:
        doc = row.as_json()
        doc["why"] = row.failed
        docs.append(doc)
    day = date.today().isoformat()
    out = {
        "date": day,
        "seed": seed,
        "hosts": args.hosts,
        "sshd_hosts": len(stack.ssh_hosts),
        "wall_s": time.monotonic() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "logs": str(work),
        "settings": settings,
        "faults": docs,
    }
    md_path = (args.out_dir or BENCH_DIR) / "FAULTS.md"
    json_path = report.write(out, args.out_dir or BENCH_DIR / "results", md_path)
    print(report.table(docs), flush=True)
    print(f"faults: wrote {json_path} and {md_path}", flush=True)
    failing = [r for r in rows if r.failed]
    for r in failing:
        print(f"faults: FAIL {r.name}: {', '.join(r.failed)}", file=sys.stderr, flush=True)
    return 1 if failing else 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
