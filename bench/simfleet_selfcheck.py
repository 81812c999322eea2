"""Quick self-check of the simulated fleet: startup cost at scale and pooled command rate.

    python -m stack.simfleet_selfcheck [--sizes 1000,10000] [--cold-hosts 1000]
        [--pool-hosts 500] [--rounds 10] [--concurrency 100]

Prints one JSON object. Bounded: a fixed number of commands and a deadline on every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncssh
import psutil  # psutil ships no stubs

from stack.simfleet import RunningFleet, SimHost, running_fleet
from stack.simfleet.server import FD_RESERVE

PHASE_DEADLINE_S = 300.0


def _rss_mib(pid: int) -> float:
    return round(float(psutil.Process(pid).memory_info().rss) / 2**20, 1)


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def measure_startup(n: int, base: Path) -> dict[str, Any]:
    """Spawn-to-ready time, in-process start time and RSS of an n-host fleet."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    connections = max(1, min(n, hard - n - FD_RESERVE))
    started = time.perf_counter()
    async with running_fleet(
        n, base / f"startup-{n}", port=0, max_connections=connections
    ) as fleet:
        ready_s = time.perf_counter() - started
        return {
            "hosts": n,
            "spawn_to_ready_s": round(ready_s, 2),
            "start_s": fleet.start_s,
            "rss_mib": _rss_mib(fleet.pid),
            "max_connections": fleet.max_connections,
        }


class Client:
    """Connect options loaded once: parsing known_hosts per connect is O(hosts) each time."""

    def __init__(self, fleet: RunningFleet) -> None:
        self.known_hosts = asyncssh.read_known_hosts(str(fleet.known_hosts))
        self.client_key = asyncssh.read_private_key(str(fleet.client_key))

    async def connect(self, host: SimHost) -> asyncssh.SSHClientConnection:
        """A new connection to this host, host key verified."""
        return await asyncssh.connect(
            host.address,
            host.port,
            username="sim",
            known_hosts=self.known_hosts,
            client_keys=[self.client_key],
            agent_path=None,
            config=None,
            connect_timeout=30,
        )


async def measure_pooled(n: int, rounds: int, concurrency: int, base: Path) -> dict[str, Any]:
    """`uname -a` on n hosts, `rounds` times, over one reused connection per host."""
    own_pid = psutil.Process().pid
    async with running_fleet(n, base / f"pooled-{n}", port=0) as fleet:
        gate = asyncio.Semaphore(concurrency)
        client = Client(fleet)

        async def open_one(host: SimHost) -> asyncssh.SSHClientConnection:
            async with gate:
                return await client.connect(host)

        async def run_one(conn: asyncssh.SSHClientConnection) -> bool:
            async with gate:
                result = await conn.run("uname -a", timeout=30)
                return bool(result.exit_status == 0)

        async with asyncio.timeout(PHASE_DEADLINE_S):
            t0 = time.perf_counter()
            conns = await asyncio.gather(*(open_one(h) for h in fleet.hosts))
            connect_s = time.perf_counter() - t0
            try:
                cpu0, server_cpu0 = _cpu_s(own_pid), _cpu_s(fleet.pid)
                t0 = time.perf_counter()
                ok = 0
                for _ in range(rounds):
                    ok += sum(await asyncio.gather(*(run_one(c) for c in conns)))
                elapsed = time.perf_counter() - t0
                client_cpu, server_cpu = _cpu_s(own_pid) - cpu0, _cpu_s(fleet.pid) - server_cpu0
            finally:
                for conn in conns:
                    conn.close()
                await asyncio.gather(*(c.wait_closed() for c in conns))
        commands = rounds * n
        return {
            "hosts": n,
            "concurrency": concurrency,
            "commands": commands,
            "ok": ok,
            "connect_all_s": round(connect_s, 2),
            "handshakes_per_s": round(n / connect_s, 1),
            "commands_per_s": round(commands / elapsed, 1),
            "client_cpu_ms_per_command": round(1000 * client_cpu / commands, 3),
            "server_cpu_ms_per_command": round(1000 * server_cpu / commands, 3),
            "server_rss_mib": _rss_mib(fleet.pid),
        }


async def measure_cold(n: int, concurrency: int, base: Path) -> dict[str, Any]:
    """One cold fan-out: connect, `uname -a`, close, on each of n hosts (Semaphore)."""
    async with running_fleet(n, base / f"cold-{n}", port=0) as fleet:
        gate = asyncio.Semaphore(concurrency)
        client = Client(fleet)

        async def one(host: SimHost) -> bool:
            async with gate:
                conn = await client.connect(host)
                try:
                    result = await conn.run("uname -a", timeout=30)
                finally:
                    conn.close()
                    await conn.wait_closed()
                return result.exit_status == 0

        async with asyncio.timeout(PHASE_DEADLINE_S):
            t0 = time.perf_counter()
            ok = sum(await asyncio.gather(*(one(h) for h in fleet.hosts)))
            elapsed = time.perf_counter() - t0
        return {
            "hosts": n,
            "concurrency": concurrency,
            "ok": ok,
            "elapsed_s": round(elapsed, 2),
            "hosts_per_s": round(n / elapsed, 1),
        }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement; returns the report."""
    report: dict[str, Any] = {"loop": type(asyncio.get_running_loop()).__module__}
    with tempfile.TemporaryDirectory(prefix="simfleet-selfcheck-") as tmp:
        base = Path(tmp)
        report["startup"] = [await measure_startup(n, base) for n in args.sizes]
        report["cold"] = await measure_cold(args.cold_hosts, args.concurrency, base)
        report["pooled"] = await measure_pooled(
            args.pool_hosts, args.rounds, args.concurrency, base
        )
    return report


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def cli(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, raise the fd limit, run, print JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sizes", type=_sizes, default=[1000, 10000])
    p.add_argument("--cold-hosts", type=int, default=1000)
    p.add_argument("--pool-hosts", type=int, default=500)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--asyncio", action="store_true", help="client on asyncio, not uvloop")
    args = p.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.asyncio:
        report = asyncio.run(main(args))
    else:
        import uvloop

        report = uvloop.run(main(args))
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(cli())
