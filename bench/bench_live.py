"""Live output benchmark: a chatty command streamed to `run --follow` (issue 15).

    python -m bench.bench_live [--hosts 100] [--rate 1000] [--seconds 10]

A simulated fleet (stack.simfleet, `sim:lines RATE S`: each line carries the time it was
written) of `--hosts` hosts, each printing `--rate` lines a second for `--seconds`; `fleetrun
collector` and `fleetrun sink` run as subprocesses on private topics (bench.fleetrun_e2e). The
request is read the way `fleetrun run --follow` reads it: the CLI's Follower with its
LinePrinter, whose write callback takes the moment a line is printed.

Measured: the delay from a line written on a host to it printed (p50/p99/max over the lines
streamed), the collector's CPU seconds (psutil, user + system) over the run (also for the same
request not streamed), the bytes of the output chunks on Kafka (record values read), the bytes
the live budget dropped (from the end-of-stream chunks), and whether every host's result came.

Needs `python -m stack up`. Prints JSON and writes bench/results/<date>-live.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import psutil

from bench.fleetrun_e2e import services
from bench.measure import write_results
from fleetrun.cli.follow import Follower, Progress
from fleetrun.cli.live import LinePrinter
from fleetrun.cli.settings import CliSettings
from schemas import Output, Request
from stack.config import StackConfig
from stack.env import StackEnv
from stack.simfleet import running_fleet


def _env_file() -> dict[str, str]:
    lines = StackConfig.from_env().env_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


class Delays:
    """The printer's write callback: when each line was printed, against when it was written."""

    def __init__(self) -> None:
        self.delays_ms: list[float] = []
        self.other = 0

    def write(self, _stream: str, text: str) -> None:
        now_ns = time.time_ns()
        parts = text.split()  # "<host>: <host> <n> <unix time ns>"
        if len(parts) == 4 and parts[3].isdigit():
            self.delays_ms.append((now_ns - int(parts[3])) / 1e6)
        else:
            self.other += 1  # e.g. "[fleetrun: N bytes not streamed]"


async def measure(hosts: int, rate: int, seconds: float, *, stream: bool = True) -> dict[str, Any]:
    """One chatty request (streamed unless `stream` is False); the numbers of the docstring."""
    env_file = _env_file()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(tmp)
        async with (
            running_fleet(hosts, work / "fleet", port=0) as fleet,
            services(env_file, fleet.dir, work) as svc,
        ):
            settings = CliSettings(
                **StackEnv.load().kafka_client_fields(svc.bootstrap), topic_prefix=svc.prefix
            )
            delays = Delays()
            printer = LinePrinter(delays.write, colour=False)
            chunk_bytes = 0
            dropped: dict[tuple[str, str], int] = {}

            def on_output(chunk: Output) -> None:
                nonlocal chunk_bytes
                chunk_bytes += len(chunk.data)  # the wire text: what the record carries
                if chunk.eos:
                    dropped[(chunk.host, chunk.stream)] = chunk.dropped_bytes
                printer.add(chunk)

            follower = Follower(settings)
            follower.on_output = on_output
            await follower.start()
            request = Request.new(
                principal="bench",
                command=f"sim:lines {rate} {seconds}",
                targets=("@all",),
                stream_output=stream,
                concurrency=hosts,
                timeout_s=seconds + 60,
            )
            collector = psutil.Process(svc.collector_pid)
            cpu0 = collector.cpu_times()
            t0 = time.monotonic()
            try:
                await follower.submit(request)
                progress = await follower.follow(
                    Progress(request.request_id),
                    lambda _p, _r: None,
                    deadline=lambda _p: t0 + seconds + 120,
                )
            finally:
                await follower.stop()
            wall_s = time.monotonic() - t0
            cpu1 = collector.cpu_times()
            printer.flush()
    d = sorted(delays.delays_ms)
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    results = list(progress.results.values())
    return {
        "stream_output": stream,
        "hosts": hosts,
        "rate_lines_per_s": rate,
        "seconds": seconds,
        "lines_written": round(hosts * rate * seconds),
        "lines_printed": len(d),
        "delay_ms": {
            "p50": round(statistics.median(d), 1) if d else None,
            "p99": round(d[int(0.99 * (len(d) - 1))], 1) if d else None,
            "max": round(d[-1], 1) if d else None,
        },
        "collector_cpu_s": round(cpu_s, 2),
        "wall_s": round(wall_s, 2),
        "chunk_bytes_on_kafka": chunk_bytes,
        "dropped_bytes": sum(dropped.values()),
        "streams_ended": len(dropped),
        "results": len(results),
        "results_ok": sum(r.status == "ok" for r in results),
        "stdout_bytes_in_results": sum(r.stdout_bytes for r in results),
    }


def markdown(report: dict[str, Any]) -> str:
    """The short note for bench/results."""
    r, off = report["streamed"], report["not_streamed"]
    return (
        f"# Live output: {r['hosts']} hosts × {r['rate_lines_per_s']} lines/s × "
        f"{r['seconds']} s, streamed to `run --follow`\n\n"
        "| measure | value |\n|---|---|\n"
        f"| lines written / printed | {r['lines_written']:,} / {r['lines_printed']:,} |\n"
        f"| delay written → printed p50 / p99 / max | {r['delay_ms']['p50']} / "
        f"{r['delay_ms']['p99']} / {r['delay_ms']['max']} ms |\n"
        f"| collector CPU | {r['collector_cpu_s']} s over {r['wall_s']} s "
        f"(the same request without stream_output: {off['collector_cpu_s']} s over "
        f"{off['wall_s']} s) |\n"
        f"| output chunk bytes on Kafka | {r['chunk_bytes_on_kafka']:,} |\n"
        f"| bytes dropped by the live budget | {r['dropped_bytes']:,} |\n"
        f"| results (ok) | {r['results']} ({r['results_ok']}); stdout bytes "
        f"{r['stdout_bytes_in_results']:,} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    report = {
        "streamed": asyncio.run(measure(args.hosts, args.rate, args.seconds)),
        "not_streamed": asyncio.run(measure(args.hosts, args.rate, args.seconds, stream=False)),
    }
    print(json.dumps(report, indent=2))
    write_results("live", date.today().isoformat(), report, markdown(report))


if __name__ == "__main__":
    main()
