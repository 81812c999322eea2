"""SSH executor benchmark against the local stack's real sshd hosts (demo1..3).

    python -m bench.bench_ssh_pool [--commands 3000] [--naive-commands 300]
        [--concurrency 30] [--loop uvloop|asyncio] [--output-mb 200] [--cold-hosts 300]

Phases, each bounded in count and by a deadline:
- pooled: `true` on the three hosts through SshExecutor (warm pool), commands/s and client CPU
  per command;
- naive: the same through a new asyncssh connection per command (the baseline);
- output: one command printing --output-mb of random data, capped to 64 KiB: MB/s, client CPU,
  and the RSS growth of this process (the executor runs in-process);
- cold: `uname -a` once on each of --cold-hosts simulated hosts (stack.simfleet, fresh
  connections, 100 at a time) through SshExecutor and through a plain asyncssh loop (connect,
  run, close), the DESIGN.md reference for a cold fan-out.

Needs `python -m stack up`. Prints JSON and writes bench/results/<date>-ssh-pool.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncssh
import psutil

from bench.measure import write_results
from collector.inventory import HostSpec, Inventory
from collector.metrics import CollectorMetrics
from collector.settings import CollectorSettings
from collector.ssh import SshExecutor
from fleetrun.runtime.settings import load
from schemas import Request, Target
from stack.simfleet import running_fleet

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
        "sha256_matches_host": r.stdout_sha256 == r.stderr_data.split()[0].decode(),
        "captured_bytes": len(r.stdout_data),
        "seconds": round(elapsed, 3),
        "mb_per_s": round(size / 1e6 / elapsed, 1),
        "client_cpu_s": round(_cpu_s() - cpu0, 3),
        "rss_growth_mib": round((peak - before) / 2**20, 1),
    }


async def cold(n: int, concurrency: int = 100) -> dict[str, Any]:
    """One command on n fresh simulated hosts: SshExecutor vs a plain asyncssh loop."""
    with tempfile.TemporaryDirectory() as tmp:
        async with running_fleet(n, Path(tmp), base_address="127.114.0.1", port=0) as fleet:
            settings = CollectorSettings(inventory=fleet.dir / "inventory.toml")
            inventory = Inventory.load(None, settings)
            specs = [inventory.resolve(Target(h.name)) for h in fleet.hosts]
            known_hosts, key = str(fleet.dir / "known_hosts"), str(fleet.dir / "client_key")

            async def plain(i: int) -> bool:
                h = specs[i]
                async with asyncio.timeout(30):
                    conn = await asyncssh.connect(
                        h.address,
                        h.port,
                        username=h.user,
                        known_hosts=known_hosts,
                        client_keys=[key],
                        config=[],
                        agent_path=None,
                    )
                    try:
                        result = await conn.run("uname -a")
                    finally:
                        conn.close()
                        await conn.wait_closed()
                return result.exit_status == 0

            ex = SshExecutor(settings, CollectorMetrics(), inventory)
            req = _request("uname -a", timeout_s=30, connect_timeout_s=30)

            async def executor(i: int) -> bool:
                r = await ex.run(specs[i], req, collector="bench")
                return r.status == "ok"

            try:
                out = {
                    "plain_asyncssh": await _drive(n, concurrency, plain),
                    "executor": await _drive(n, concurrency, executor),
                }
            finally:
                await ex.close()
    out["executor_over_plain"] = round(
        out["executor"]["commands_per_s"] / out["plain_asyncssh"]["commands_per_s"], 2
    )
    return out


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
            "cold": await cold(args.cold_hosts),
        }
    finally:
        await ex.close()
    report["pooled_over_naive"] = round(
        report["pooled"]["commands_per_s"] / report["naive"]["commands_per_s"], 1
    )
    return report


def markdown(r: dict[str, Any]) -> str:
    p, n, o = r["pooled"], r["naive"], r["output"]
    cp, ce = r["cold"]["plain_asyncssh"], r["cold"]["executor"]
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
            f"Cold fan-out, one command on {ce['commands']} fresh simulated hosts "
            f"({ce['concurrency']} at a time; the fleet shares the CPUs):",
            "",
            "| client | hosts/s | client CPU ms/host | failures |",
            "|---|---|---|---|",
            f"| plain asyncssh loop (connect, run, close) | {cp['commands_per_s']} | "
            f"{cp['client_cpu_ms_per_command']} | {cp['failures']} |",
            f"| SshExecutor | {ce['commands_per_s']} | {ce['client_cpu_ms_per_command']} | "
            f"{ce['failures']} |",
            "",
            f"SshExecutor / plain loop: **{r['cold']['executor_over_plain']}×** "
            "(DESIGN.md target: ≥ 0.9×).",
            "",
        ]
    )


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--naive-commands", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--output-mb", type=int, default=200)
    parser.add_argument("--cold-hosts", type=int, default=300)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        report = uvloop.run(main(args))
    else:
        report = asyncio.run(main(args))
    print(json.dumps(report, indent=2))
    stem = write_results("ssh-pool", report["date"], report, markdown(report))
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)


if __name__ == "__main__":
    run()
