"""What live output costs when it is off: warm-500x50 with and without the feature's code.

    python -m bench.bench_live_cost [--hosts 500] [--rounds 50] [--repeats 3]
        [--before COMMIT]

The scenario of bench/scenarios.py `warm-500x50` (`uname -a` on the same 500 simulated hosts,
50 requests back to back after one warm-up request; collector and sink as subprocesses), timed
from the first request produced to the last `completed` status read. It runs alternately on
this tree and on a git worktree of `--before` (the commit before live output), `--repeats`
times each; the ratio of the median rates is the answer (the issue asks ≥ 0.97).

The worktree runs this same file (copied in, not committed there), so each side's collector is
that side's code (bench.fleetrun_e2e starts it from its own tree). The fleets listen on a port
of their own (port 0): never the harness's 127.2.0.0/16 fleet or the shared stack's.

Needs `python -m stack up`. Prints JSON and writes bench/results/<date>-live-cost.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import schemas
from bench.fleetrun_e2e import services
from stack.config import StackConfig
from stack.env import kafka_options
from stack.simfleet import running_fleet

REPO = Path(__file__).resolve().parents[1]


def _env_file() -> dict[str, str]:
    lines = StackConfig.from_env().env_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


async def _round(bootstrap: str, prefix: str, hosts: int, count: int) -> float:
    """Submit `count` requests to @all at once; seconds until every completed status is read."""
    requests = [
        schemas.Request.new(
            principal="bench", command="uname -a", targets=("@all",), concurrency=100
        )
        for _ in range(count)
    ]
    waiting = {r.request_id for r in requests}
    consumer = AIOKafkaConsumer(prefix + "status", **kafka_options(bootstrap))
    producer = AIOKafkaProducer(**kafka_options(bootstrap), acks="all")
    await consumer.start()
    await producer.start()
    try:
        await consumer.seek_to_end()
        t0 = time.monotonic()
        for r in requests:
            await producer.send(prefix + "requests", schemas.encode(r), key=r.request_id.encode())
        await producer.flush()
        async with asyncio.timeout(240):
            while waiting:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for rec in records:
                        status = schemas.decode_status(rec.value)
                        if status.state == "completed":
                            waiting.discard(status.request_id)
        return time.monotonic() - t0
    finally:
        await producer.stop()
        await consumer.stop()


async def warm_rate(hosts: int, rounds: int) -> float:
    """Results per second of `rounds` requests to `hosts` warm hosts (this tree's code)."""
    with tempfile.TemporaryDirectory(prefix="bench-live-cost-") as tmp:
        work = Path(tmp)
        async with (
            running_fleet(hosts, work / "fleet", port=0) as fleet,
            services(_env_file(), fleet.dir, work) as svc,
        ):
            await _round(svc.bootstrap, svc.prefix, hosts, 1)  # warm-up: the pool fills
            wall_s = await _round(svc.bootstrap, svc.prefix, hosts, rounds)
    return hosts * rounds / wall_s


def _side(tree: Path, hosts: int, rounds: int) -> float:
    """One measurement in a subprocess whose code is `tree`'s."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_live_cost", "--one", str(hosts), str(rounds)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), **_inherited()},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _inherited() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default="208158e")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(asyncio.run(warm_rate(*args.one)))
        return
    before = Path(tempfile.mkdtemp(prefix="fleetrun-before-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], check=True)
    try:
        shutil.copy(Path(__file__), before / "bench" / "bench_live_cost.py")
        rates: dict[str, list[float]] = {"with_feature": [], "before": []}
        for _ in range(args.repeats):
            rates["with_feature"].append(_side(REPO, args.hosts, args.rounds))
            rates["before"].append(_side(before, args.hosts, args.rounds))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], check=False)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    report: dict[str, Any] = {
        "scenario": "warm-500x50",
        "hosts": args.hosts,
        "rounds": args.rounds,
        "before": args.before,
        "results_per_s": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "median_results_per_s": {k: round(v, 1) for k, v in medians.items()},
        "ratio": round(medians["with_feature"] / medians["before"], 3),
    }
    print(json.dumps(report, indent=2))
    day = date.today().isoformat()
    results = REPO / "bench" / "results"
    (results / f"{day}-live-cost.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / f"{day}-live-cost.md").write_text(
        f"# Live output off: warm-500x50 with the feature vs {args.before} (before it)\n\n"
        f"results/s, {args.repeats} alternating runs each: with the feature "
        f"{report['results_per_s']['with_feature']}, before {report['results_per_s']['before']}"
        f"; ratio of medians **{report['ratio']}** (target ≥ 0.97).\n"
    )


if __name__ == "__main__":
    main()
