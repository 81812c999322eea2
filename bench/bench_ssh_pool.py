"""SSH executor benchmark against the local stack's real sshd hosts (demo1..3).

    python -m bench.bench_ssh_pool [--commands 3000] [--naive-commands 300]
        [--concurrency 30] [--loop uvloop|asyncio] [--output-mb 200]

Phases, each bounded in count and by a deadline:
- pooled: `true` on the three hosts through SshExecutor (warm pool), commands/s and client CPU
  per command;
- naive: the same through a new asyncssh connection per command (the baseline);
- output: one command printing --output-mb of random data, capped to 64 KiB: MB/s, client CPU,
  and the RSS growth of this process (the executor runs in-process).

Needs `python -m stack up`. Prints JSON and writes bench/results/<date>-ssh-pool.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncssh
import psutil

from collector.inventory import HostSpec, Inventory
from collector.metrics import CollectorMetrics
from collector.settings import CollectorSettings
from collector.ssh import SshExecutor
from fleetrun.settings import load
from schemas import Request, Target

RESULTS_DIR = Path(__file__).parent / "results"
PHASE_DEADLINE_S = 300.0


def _cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


async def _drive(n: int, concurrency: int, one: Callable[[int], Awaitable[bool]]) -> dict[str, Any]:
    """Run `one(i)` for i < n, `concurrency` at a time; rate, CPU and failures."""
    it = iter(range(n))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i in it:
            if not await one(i):
                failures += 1

    cpu0, t0 = _cpu_s(), time.perf_counter()
    async with asyncio.timeout(PHASE_DEADLINE_S):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    return {
        "commands": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "commands_per_s": round(n / elapsed, 1),
        "client_cpu_ms_per_command": round(cpu / n * 1000, 3),
        "failures": failures,
    }


def _request(command: str, **options: Any) -> Request:
    return Request.new(principal="bench", command=command, targets=["@demo"], **options)


async def pooled(ex: SshExecutor, hosts: list[HostSpec], n: int, c: int) -> dict[str, Any]:
    req = _request("true", timeout_s=30)
    for h in hosts:  # warm the pool: the phase measures reuse, not handshakes
        await ex.run(h, req, collector="bench")

    async def one(i: int) -> bool:
        r = await ex.run(hosts[i % len(hosts)], req, collector="bench")
        return r.status == "ok"

    out = await _drive(n, c, one)
    out["pool"] = ex.pool_stats()
    return out


async def naive(
    settings: CollectorSettings, hosts: list[HostSpec], n: int, c: int
) -> dict[str, Any]:
    async def one(i: int) -> bool:
        h = hosts[i % len(hosts)]
        async with asyncio.timeout(30):
            conn = await asyncssh.connect(
                h.address,
                h.port,
                username=h.user,
                client_keys=[str(k) for k in settings.ssh_client_keys],
                known_hosts=str(settings.ssh_known_hosts),
                config=[],
                agent_path=None,
            )
            try:
                result = await conn.run("true")
            finally:
                conn.close()
                await conn.wait_closed()
        return result.exit_status == 0

    return await _drive(n, c, one)


async def output(ex: SshExecutor, host: HostSpec, megabytes: int) -> dict[str, Any]:
    size = megabytes * 1_000_000
    cmd = f"{{ head -c {size} /dev/urandom | tee /dev/fd/3 | sha256sum >&2; }} 3>&1"
    proc = psutil.Process()
    before = peak = proc.memory_info().rss
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            try:
                async with asyncio.timeout(0.01):
                    await done.wait()
            except TimeoutError:
                pass

    sampler = asyncio.create_task(sample())
    cpu0, t0 = _cpu_s(), time.perf_counter()
    try:
        r = await ex.run(host, _request(cmd, timeout_s=PHASE_DEADLINE_S), collector="bench")
    finally:
        done.set()
        await sampler
    elapsed = time.perf_counter() - t0
    return {
        "bytes": r.stdout_bytes,
        "status": r.status,
        "sha256_matches_host": r.stdout_sha256 == r.stderr.split()[0].decode(),
        "captured_bytes": len(r.stdout),
        "seconds": round(elapsed, 3),
        "mb_per_s": round(size / 1e6 / elapsed, 1),
        "client_cpu_s": round(_cpu_s() - cpu0, 3),
        "rss_growth_mib": round((peak - before) / 2**20, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = load(CollectorSettings, section="collector")
    inventory = Inventory.load(settings.inventory, settings)
    hosts = [inventory.resolve(Target(name)) for name in inventory.groups["demo"]]
    ex = SshExecutor(settings, CollectorMetrics(), inventory)
    try:
        report: dict[str, Any] = {
            "benchmark": "ssh-pool",
            "date": date.today().isoformat(),
            "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
            "loop": args.loop,
            "hosts": [f"{h.name}={h.address}:{h.port}" for h in hosts],
            "pooled": await pooled(ex, hosts, args.commands, args.concurrency),
            "naive": await naive(settings, hosts, args.naive_commands, args.concurrency),
            "output": await output(ex, hosts[0], args.output_mb),
        }
    finally:
        await ex.close()
    report["pooled_over_naive"] = round(
        report["pooled"]["commands_per_s"] / report["naive"]["commands_per_s"], 1
    )
    return report


def markdown(r: dict[str, Any]) -> str:
    p, n, o = r["pooled"], r["naive"], r["output"]
    return "\n".join(
        [
            f"# SSH executor on the local stack ({r['date']}, {r['machine']['cpus']} CPUs, "
            f"{r['loop']})",
            "",
            "| phase | commands | concurrency | commands/s | client CPU ms/command | failures |",
            "|---|---|---|---|---|---|",
            f"| pooled (SshExecutor) | {p['commands']} | {p['concurrency']} | "
            f"{p['commands_per_s']} | {p['client_cpu_ms_per_command']} | {p['failures']} |",
            f"| new connection per command | {n['commands']} | {n['concurrency']} | "
            f"{n['commands_per_s']} | {n['client_cpu_ms_per_command']} | {n['failures']} |",
            "",
            f"Pooled is **{r['pooled_over_naive']}×** the naive rate "
            f"(pool: {p['pool']['open']} connections, {p['pool']['reused_total']} reuses).",
            "",
            f"Output: {o['bytes']:,} bytes in {o['seconds']} s ({o['mb_per_s']} MB/s), "
            f"captured {o['captured_bytes']:,} bytes, digest matches the host's: "
            f"{o['sha256_matches_host']}, client CPU {o['client_cpu_s']} s, "
            f"RSS growth {o['rss_growth_mib']} MiB.",
            "",
        ]
    )


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--naive-commands", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--output-mb", type=int, default=200)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        report = uvloop.run(main(args))
    else:
        report = asyncio.run(main(args))
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / f"{report['date']}-ssh-pool"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)


if __name__ == "__main__":
    run()
