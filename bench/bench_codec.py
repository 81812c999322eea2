"""Codec benchmark: encode and decode+validate rates for a typical 1 KiB result, on one core.

The process is single-threaded, so every figure is one core's worth; it is not pinned to a CPU
so that the scheduler can avoid a core busy with other work on a shared machine.

Run: .venv/bin/python -m bench.bench_codec  (about 20 s). Prints JSON and writes
bench/results/<date>-codec.json and bench/results/<date>-codec.md. Each figure is the median of
several timed runs (the best run is reported too); the target from the wire-contract issue is
decode+validate >= 100,000 results/s.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import timeit
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

import schemas
from bench.measure import write_results
from schemas import Request, Result, Status, StatusCounts

TARGET_DECODE_PER_S = 100_000
REPEATS = 7
RUN_SECONDS = 0.25  # per timed run: long enough to swamp timer noise, short enough to finish fast


def typical_result() -> Result:
    """A result like `uname -a`/`df -h` on a real host: about 1 KiB on the wire."""
    stdout = (
        b"Filesystem      Size  Used Avail Use% Mounted on\n"
        b"/dev/nvme0n1p2  234G  121G  102G  55% /\n"
        b"tmpfs            16G  2.1M   16G   1% /dev/shm\n"
        b"/dev/nvme0n1p1  511M  6.1M  505M   2% /boot/efi\n"
        b"Linux web07.dc1 6.1.0-21-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1 x86_64 GNU/Linux\n"
        b" 12:00:01 up 41 days,  3:12,  0 users,  load average: 0.31, 0.42, 0.40\n"
    )
    started = datetime(2024, 5, 1, 12, 0, 1, 250_000, tzinfo=UTC)
    return Result(
        request_id="0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10",
        host="web07.dc1",
        port=22,
        user="deploy",
        status="ok",
        exit_status=0,
        stdout=stdout,
        stdout_bytes=len(stdout),
        stdout_sha256=hashlib.sha256(stdout).hexdigest(),
        started_at=started,
        finished_at=started + timedelta(milliseconds=152, microseconds=113),
        duration_ms=152,
        collector="collector-a-4121",
        labels={"team": "web", "ticket": "CHG-1234", "env": "prod"},
    )


def measure(fn: Callable[[], object]) -> dict[str, float]:
    """Calls per second of `fn`: median and best of REPEATS timed runs."""
    number = max(1, int(RUN_SECONDS / max(timeit.timeit(fn, number=200) / 200, 1e-9)))
    runs = sorted(number / t for t in timeit.repeat(fn, number=number, repeat=REPEATS))
    median = runs[len(runs) // 2]
    return {
        "per_s": round(median),
        "best_per_s": round(runs[-1]),
        "us_each": round(1e6 / median, 2),
    }


def run() -> dict[str, Any]:
    """Run every measurement and return the report."""
    result = typical_result()
    raw = schemas.encode(result)
    doc = orjson.loads(raw)
    binary = replace(result, stdout=bytes(range(256)) * 2, stdout_bytes=512)
    raw_binary = schemas.encode(binary)
    request = Request.new(
        principal="alice@example.com", command="df -h /", targets=["web[01-20].dc1", "!web05.dc1"]
    )
    raw_request = schemas.encode(request)
    status = Status.completed(
        result.request_id, StatusCounts(ok=19, failed=1), duration_ms=11450, collector="c1"
    )
    raw_status = schemas.encode(status)
    assert schemas.decode_result(raw) == result  # measure the real thing, not a failing path

    cases: dict[str, tuple[str, Callable[[], object]]] = {
        "orjson_loads": ("orjson.loads alone (baseline)", lambda: orjson.loads(raw)),
        "decode_result": (
            "decode_result: parse + validate + typed record",
            lambda: schemas.decode_result(raw),
        ),
        "decode_result_base64": (
            "decode_result, 512 B binary stdout (base64)",
            lambda: schemas.decode_result(raw_binary),
        ),
        "orjson_dumps": (
            "orjson.dumps of the document alone (baseline)",
            lambda: orjson.dumps(doc),
        ),
        "encode_result": ("encode: record -> validated JSON bytes", lambda: schemas.encode(result)),
        "encode_result_unchecked": (
            "encode(validate=False)",
            lambda: schemas.encode(result, validate=False),
        ),
        "decode_request": (
            "decode_request (targets grammar checked)",
            lambda: schemas.decode_request(raw_request),
        ),
        "decode_status": ("decode_status (completed)", lambda: schemas.decode_status(raw_status)),
    }
    figures: dict[str, dict[str, Any]] = {
        name: {"what": what, **measure(fn)} for name, (what, fn) in cases.items()
    }
    decode_rate = int(figures["decode_result"]["per_s"])
    return {
        "benchmark": "codec",
        "date": date.today().isoformat(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "orjson": orjson.__version__,
        "result_bytes": len(raw),
        "repeats": REPEATS,
        "target_decode_per_s": TARGET_DECODE_PER_S,
        "meets_target": decode_rate >= TARGET_DECODE_PER_S,
        "figures": figures,
    }


def markdown(report: dict[str, Any]) -> str:
    """A short markdown table of the report."""
    lines = [
        f"# Codec benchmark, {report['date']}",
        "",
        f"Typical result: {report['result_bytes']} bytes of JSON. One core, "
        f"Python {report['python']}, orjson {report['orjson']}; "
        f"median of {report['repeats']} runs (best in brackets).",
        "",
        "| operation | records/s | µs each |",
        "|---|---:|---:|",
    ]
    for figure in report["figures"].values():
        rate = f"{figure['per_s']:,} ({figure['best_per_s']:,})"
        lines.append(f"| {figure['what']} | {rate} | {figure['us_each']} |")
    verdict = "meets" if report["meets_target"] else "MISSES"
    lines += [
        "",
        f"decode+validate {verdict} the target of {report['target_decode_per_s']:,} results/s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run, print JSON, write bench/results/<date>-codec.{json,md}."""
    report = run()
    write_results("codec", report["date"], report, markdown(report))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
