"""Scale figures for sharded requests and fair shares (issue 16 item 3).

    python -m bench.bench_shards [--hosts 20000] [--collectors 1,2,3] [--big 5000]
                                 [--small 20] [--small-hosts 3] [--shard-size 1000]

1. **Scale out.** One request on `--hosts` simulated hosts (`true`), the fleet spread over as
   many simfleet processes as the file-descriptor limit needs (at most `PER_PROCESS` hosts each:
   one listener per host plus the collectors' connections stay under 20,000 fds), run by 1, 2
   and 3 `fleetrun collector` processes of one group with `--shard-size`, and one sink. Measured:
   wall time from the request produced to its last row in PostgreSQL (and its `completed`),
   CPU seconds per host summed over the collectors, hosts per collector (from the `collector`
   column of the rows), peak RSS per collector. On a 2-core box more collectors cannot be
   faster; the figures show the work spreads evenly at no more CPU per host.
2. **Fairness.** One collector; `--small` requests of `--small-hosts` hosts from principal
   `alice`, produced once a `--big`-host request of principal `batch` is running, against the
   same small requests on the idle collector: p50/p99/max of submit → `completed`.

Needs `python -m stack up`. Writes bench/results/<date>-shards.{json,md} and two plots,
bench/plots/shards-balance.png and bench/plots/shards-fairness.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import statistics
import tempfile
import tomllib
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final

import asyncpg
from aiokafka import AIOKafkaProducer

import schemas
from bench.fleetrun_e2e import Services, run_requests, services
from bench.measure import health, write_results
from schemas import Request
from stack.config import StackConfig
from stack.env import kafka_options
from stack.simfleet import running_fleet
from stack.simfleet.keys import load_or_create_client_key

PER_PROCESS: Final = 6_000  # simulated hosts per fleet process (fds: listeners + connections)
PLOTS: Final = Path(__file__).resolve().parent / "plots"
CAP_S: Final = 900.0


def _env_file() -> dict[str, str]:
    lines = StackConfig.from_env().env_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@contextlib.asynccontextmanager
async def spread_fleet(
    hosts: int, work: Path, per_process: int = PER_PROCESS
) -> AsyncIterator[tuple[Path, list[str]]]:
    """`hosts` simulated hosts over ceil(hosts / per_process) processes; yields a directory with
    one inventory.toml (names p<i>-<name>), known_hosts and the shared client_key."""
    count = max(1, math.ceil(hosts / per_process))
    merged = work / "fleet"
    merged.mkdir(parents=True)
    load_or_create_client_key(merged / "client_key")
    async with contextlib.AsyncExitStack() as stack:
        fleets = []
        for i in range(count):
            share = hosts // count + (1 if i < hosts % count else 0)
            part = work / f"fleet{i}"
            part.mkdir()
            shutil.copy(merged / "client_key", part / "client_key")  # one key for every process
            shutil.copy(merged / "client_key.pub", part / "client_key.pub")
            fleets.append(
                await stack.enter_async_context(
                    running_fleet(share, part, base_address=f"127.{80 + i}.0.1", port=0)
                )
            )
        user = tomllib.loads(fleets[0].inventory.read_text())["defaults"]["user"]
        names: list[str] = []
        lines = ["[defaults]", f"user = {json.dumps(user)}", "", "[hosts]"]
        known: list[str] = []
        for i, fleet in enumerate(fleets):
            known.append(fleet.known_hosts.read_text())
            for h in fleet.hosts:
                names.append(f"p{i}-{h.name}")
                lines.append(
                    f"{names[-1]} = {{ address = {json.dumps(h.address)}, port = {h.port} }}"
                )
        lines += ["", "[groups]", f"all = {json.dumps(names)}"]
        (merged / "inventory.toml").write_text("\n".join(lines) + "\n")
        (merged / "known_hosts").write_text("".join(known))
        yield merged, names


async def wait_balanced(svc: Services, timeout_s: float = 120.0) -> None:
    """Until every collector owns requests and shards partitions (the group has settled)."""
    async with asyncio.timeout(timeout_s):
        while True:
            docs = [await health(port) for port in svc.collector_ports]
            if all(d and d.get("assigned_partitions") and d.get("shard_partitions") for d in docs):
                owned = [p for d in docs if d for p in d["assigned_partitions"]]
                if len(owned) == len(set(owned)):
                    return
            await asyncio.sleep(0.5)


async def scale_run(
    env: dict[str, str], fleet_dir: Path, work: Path, hosts: int, collectors: int, shard: int
) -> dict[str, Any]:
    """One request on every host, run by `collectors` collectors."""
    settings = {"FLEETRUN_COLLECTOR_SHARD_SIZE": str(shard)}
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    async with services(env, fleet_dir, work, settings=settings, collectors=collectors) as svc:
        await wait_balanced(svc)
        watch = {f"collector-{i + 1}": pid for i, pid in enumerate(svc.collector_pids)}
        e2e = await run_requests(
            svc,
            targets=["@all"],
            hosts=hosts,
            command="true",
            count=1,
            cap_s=CAP_S,
            watch=watch,
            # 4 simulated fleets and up to 3 collectors share 2 cores: handshakes queue for
            # seconds, which is not what this measures (the 10 s default cut 5% of hosts).
            options={"concurrency": 200, "timeout_s": 120, "connect_timeout_s": 60},
        )
        conn = await asyncpg.connect(svc.dsn, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT collector, count(*) AS n FROM results GROUP BY collector", timeout=60
            )
        finally:
            await conn.close(timeout=10)
    per_collector = {r["collector"]: int(r["n"]) for r in rows}
    cpu = sum(u["cpu_s"] for name, u in e2e.usage.items() if name.startswith("collector-"))
    return {
        "collectors": collectors,
        "hosts": hosts,
        "wall_s": None if e2e.wall_s is None else round(e2e.wall_s, 2),
        "results": len(e2e.results),
        "ok": sum(r.status == "ok" for r in e2e.results),
        "collector_cpu_s": round(cpu, 2),
        "cpu_ms_per_host": round(cpu * 1000 / hosts, 3),
        "hosts_per_collector": dict(sorted(per_collector.items())),
        "peak_rss_mb": {n: u["peak_rss_mb"] for n, u in e2e.usage.items()},
    }


async def _completed_latencies(dsn: str, ids: Sequence[str], cap_s: float) -> list[float]:
    """submit → completed (s) of the requests, once all have completed in PostgreSQL."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with asyncio.timeout(cap_s):
            while True:
                rows = await conn.fetch(
                    "SELECT extract(epoch FROM completed_at - submitted_at) AS s FROM requests"
                    " WHERE request_id = ANY($1::uuid[]) AND completed_at IS NOT NULL",
                    list(ids),
                    timeout=10,
                )
                if len(rows) == len(ids):
                    return sorted(float(r["s"]) for r in rows)
                await asyncio.sleep(0.05)
    finally:
        await conn.close(timeout=10)


async def _produce(svc: Services, requests: Sequence[Request]) -> None:
    producer = AIOKafkaProducer(**kafka_options(svc.bootstrap), acks="all", linger_ms=0)
    await producer.start()
    try:
        for req in requests:
            value = schemas.encode(req)
            await producer.send(svc.prefix + "requests", value, key=req.request_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def fairness_run(
    env: dict[str, str], fleet_dir: Path, work: Path, names: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Small requests on an idle collector, then beside a big one."""
    span = args.small * args.small_hosts

    def smalls(first: int) -> list[Request]:
        """Small requests on hosts of their own (never on connections pooled by another run)."""
        return [
            Request.new(
                principal="alice",
                command="true",
                targets=names[first + i * args.small_hosts : first + (i + 1) * args.small_hosts],
            )
            for i in range(args.small)
        ]

    out: dict[str, Any] = {"big": args.big, "small": args.small, "small_hosts": args.small_hosts}
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    # The big request names a group: a request lists at most 1,000 targets.
    inventory = fleet_dir / "inventory.toml"
    text = await asyncio.to_thread(inventory.read_text)
    if "\nbig = " not in text:  # [groups] is the file's last table
        text += f"big = {json.dumps(names[: args.big])}\n"
        await asyncio.to_thread(inventory.write_text, text)
    async with services(env, fleet_dir, work) as svc:
        idle = smalls(args.big)
        await _produce(svc, idle)
        out["idle_s"] = _summary(
            await _completed_latencies(svc.dsn, [r.request_id for r in idle], CAP_S)
        )
        # Default concurrency (per shard): the sessions and connections the issue describes.
        big = Request.new(principal="batch", command="sim:sleep 1", targets=["@big"])
        await _produce(svc, [big])
        await asyncio.sleep(3)  # the big one is running (its first hosts connected)
        beside = smalls(args.big + span)
        await _produce(svc, beside)
        out["beside_big_s"] = _summary(
            await _completed_latencies(svc.dsn, [r.request_id for r in beside], CAP_S)
        )
        (big_done,) = await _completed_latencies(svc.dsn, [big.request_id], CAP_S)
        out["big_s"] = round(big_done, 2)
    p99, idle99 = out["beside_big_s"]["p99"], out["idle_s"]["p99"]
    out["p99_ratio"] = round(p99 / idle99, 2) if idle99 else None
    return out


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "p50": round(statistics.median(values), 3),
        "p99": round(values[min(len(values) - 1, int(0.99 * len(values)))], 3),
        "max": round(values[-1], 3),
        "all": [round(v, 3) for v in values],
    }


def markdown(report: dict[str, Any]) -> str:
    """The short note for bench/results."""
    lines = [
        f"# Sharded requests: {report['hosts']:,} hosts, shard size {report['shard_size']:,}",
        "",
        "| collectors | wall to last row (s) | CPU ms/host | hosts per collector | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for run in report["scale"]:
        per = ", ".join(f"{k}: {v:,}" for k, v in run["hosts_per_collector"].items())
        rss = ", ".join(f"{v}" for k, v in run["peak_rss_mb"].items())
        lines.append(
            f"| {run['collectors']} | {run['wall_s']} | {run['cpu_ms_per_host']} | {per} | {rss} |"
        )
    f = report["fairness"]
    lines += [
        "",
        f"# Fairness: {f['small']} × {f['small_hosts']}-host requests (alice) beside a "
        f"{f['big']:,}-host request (batch), one collector",
        "",
        "| small requests | p50 (s) | p99 (s) | max (s) |",
        "|---|---|---|---|",
        f"| idle collector | {f['idle_s']['p50']} | {f['idle_s']['p99']} | {f['idle_s']['max']} |",
        f"| beside the big one | {f['beside_big_s']['p50']} | {f['beside_big_s']['p99']} | "
        f"{f['beside_big_s']['max']} |",
        "",
        f"p99 beside / idle: {f['p99_ratio']}; the big request took {f['big_s']} s.",
        "",
        "![hosts per collector](plots/shards-balance.png)",
        "![small requests beside a big one](plots/shards-fairness.png)",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any]) -> None:
    """Hosts per collector for each run; small requests' latency idle vs beside the big one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for run in report["scale"]:
        counts = list(run["hosts_per_collector"].values())
        bottom = 0
        for i, n in enumerate(counts):
            ax.bar(str(run["collectors"]), n, bottom=bottom, color=f"C{i}")
            bottom += n
    ax.set_xlabel("collector processes")
    ax.set_ylabel("hosts run (stacked per collector)")
    ax.set_title(f"One request on {report['hosts']:,} hosts")
    fig.tight_layout()
    fig.savefig(PLOTS / "shards-balance.png", dpi=120)
    plt.close(fig)
    f = report["fairness"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, key in (
        ("idle collector", "idle_s"),
        (f"beside {f['big']:,} hosts", "beside_big_s"),
    ):
        values = f[key]["all"]
        ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
    ax.set_xlabel("submit → completed (s)")
    ax.set_ylabel("share of small requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOTS / "shards-fairness.png", dpi=120)
    plt.close(fig)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    env = _env_file()
    collectors = [int(c) for c in args.collectors.split(",") if c]
    needed = max(args.hosts, args.big + 2 * args.small * args.small_hosts)
    report: dict[str, Any] = {"hosts": args.hosts, "shard_size": args.shard_size, "scale": []}
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        work = Path(tmp)
        async with spread_fleet(needed, work, args.per_process) as (fleet_dir, names):
            for n in collectors:
                report["scale"].append(
                    await scale_run(
                        env, fleet_dir, work / f"scale{n}", args.hosts, n, args.shard_size
                    )
                )
                print(json.dumps(report["scale"][-1]), flush=True)
            report["fairness"] = await fairness_run(env, fleet_dir, work / "fair", names, args)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=20_000)
    parser.add_argument(
        "--collectors", default="1,2,3", help="'' runs the fairness part alone, and writes nothing"
    )
    parser.add_argument("--shard-size", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=5_000)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--small-hosts", type=int, default=3)
    parser.add_argument("--per-process", type=int, default=PER_PROCESS, help="hosts per simfleet")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2))
    if not report["scale"]:
        return  # an experiment on fairness: the results files keep the last full run
    write_results("shards", date.today().isoformat(), report, markdown(report))
    plot(report)


if __name__ == "__main__":
    main()
