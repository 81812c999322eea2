"""Codec benchmark: decode + validate of a typical 1 KiB result, on one core, and its alternatives.

What is measured, side by side in one run (single-threaded: every figure is one core's worth):
- the contract codec (msgspec records, schemas/): decode_result, the sink's row from it, encode;
- jsonschema-rs, the alternative the structure issue names (it validates straight from the
  schema files, in Rust): its validation of the same document alone, after orjson parsed it.
  It would still need a typed record built afterwards, so its figure is a lower bound;
- the old hand-written C decoder's last figure (bench/results/2026-11-26-sink.json), for the
  record: it is no longer in the tree.

Run: .venv/bin/python -m bench.bench_codec (about 30 s). Writes bench/results/<date>-codec.json
and .md. Each figure is the median of several timed runs (the best run in brackets). Targets:
decode + validate of the typical result ≤ 3 µs; the sink's decode + row ≤ the old C path's.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import orjson

import schemas
from bench.measure import write_results
from schemas import (
    Request,
    Result,
    ResultStatus,
    Status,
    StatusCounts,
    encode_output,
    format_timestamp,
)
from sink.rows import decode_result_record

TARGET_DECODE_US = 3.0
OLD_C_PATH_US = 3.84  # schemas._fastrow decode + validate + row, bench/results/2026-11-26-sink
REPEATS = 7
RUN_SECONDS = 0.25  # per timed run: long enough to swamp timer noise, short enough to finish fast


def typical_result(stdout: bytes | None = None) -> Result:
    """A result like `uname -a`/`df -h` on a real host: about 1 KiB on the wire."""
    if stdout is None:
        stdout = (
            b"Filesystem      Size  Used Avail Use% Mounted on\n"
            b"/dev/nvme0n1p2  234G  121G  102G  55% /\n"
            b"tmpfs            16G  2.1M   16G   1% /dev/shm\n"
            b"/dev/nvme0n1p1  511M  6.1M  505M   2% /boot/efi\n"
            b"Linux web07.dc1 6.1.0-21-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1 x86_64 "
            b"GNU/Linux\n"
            b" 12:00:01 up 41 days,  3:12,  0 users,  load average: 0.31, 0.42, 0.40\n"
        )
    started = datetime(2024, 5, 1, 12, 0, 1, 250_000, tzinfo=UTC)
    text, encoding = encode_output(stdout)
    return Result(
        request_id="0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10",
        host="web07.dc1",
        port=22,
        user="deploy",
        attempt=1,
        status="ok",
        exit_status=0,
        exit_signal=None,
        stdout=text,
        stderr="",
        stdout_encoding=encoding,
        stderr_encoding="utf-8",
        stdout_bytes=len(stdout),
        stderr_bytes=0,
        stdout_truncated=False,
        stderr_truncated=False,
        stdout_sha256=hashlib.sha256(stdout).hexdigest(),
        stderr_sha256=schemas.EMPTY_SHA256,
        started_at=format_timestamp(started),
        finished_at=format_timestamp(started + timedelta(milliseconds=152, microseconds=113)),
        duration_ms=152,
        error=None,
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


def _jsonschema_rs_cases(raw: bytes) -> dict[str, tuple[str, Callable[[], object]]]:
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - the bench extra installs it
        return {}
    validator = jsonschema_rs.validator_for(schemas.load_schema("result"))
    doc = orjson.loads(raw)
    assert validator.is_valid(doc)
    return {
        "jsonschema_rs_validate": (
            "jsonschema-rs: validation alone, of the parsed document",
            lambda: validator.is_valid(doc),
        ),
        "jsonschema_rs_parse_validate": (
            "jsonschema-rs: orjson.loads + validation (no typed record yet)",
            lambda: validator.is_valid(orjson.loads(raw)),
        ),
    }


def run() -> dict[str, Any]:
    """Run every measurement and return the report."""
    result = typical_result()
    raw = schemas.encode(result)
    raw_binary = schemas.encode(typical_result(bytes(range(256)) * 2))
    request = Request.new(
        principal="alice@example.com", command="df -h /", targets=["web[01-20].dc1", "!web05.dc1"]
    )
    raw_request = schemas.encode(request)
    ok: ResultStatus = "ok"
    statuses: list[ResultStatus] = [ok] * 19 + ["failed"]
    counts = StatusCounts.of(statuses)
    raw_status = schemas.encode(
        Status.completed(result.request_id, counts, duration_ms=11450, collector="c1")
    )
    assert schemas.decode_result(raw) == result  # measure the real thing, not a failing path
    plain = msgspec.json.Decoder()

    cases: dict[str, tuple[str, Callable[[], object]]] = {
        "orjson_loads": ("orjson.loads alone (baseline)", lambda: orjson.loads(raw)),
        "msgspec_untyped": ("msgspec decode, untyped (baseline)", lambda: plain.decode(raw)),
        "decode_result": (
            "decode_result: parse + validate + typed record",
            lambda: schemas.decode_result(raw),
        ),
        "sink_row": (
            "the sink's decode + COPY row (decode_result_record)",
            lambda: decode_result_record(raw, 3, 1234),
        ),
        "decode_result_base64": (
            "decode_result, 512 B binary stdout (base64)",
            lambda: schemas.decode_result(raw_binary),
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
        **_jsonschema_rs_cases(raw),
    }
    figures: dict[str, dict[str, Any]] = {
        name: {"what": what, **measure(fn)} for name, (what, fn) in cases.items()
    }
    decode_us = float(figures["decode_result"]["us_each"])
    row_us = float(figures["sink_row"]["us_each"])
    return {
        "benchmark": "codec",
        "date": date.today().isoformat(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "msgspec": msgspec.__version__,
        "orjson": orjson.__version__,
        "result_bytes": len(raw),
        "repeats": REPEATS,
        "old_c_path_us": OLD_C_PATH_US,
        "targets": {
            "decode_us": {"wanted": TARGET_DECODE_US, "got": decode_us},
            "sink_row_us_vs_old_c": {"wanted": OLD_C_PATH_US, "got": row_us},
        },
        "meets_target": decode_us <= TARGET_DECODE_US,
        "figures": figures,
    }


def markdown(report: dict[str, Any]) -> str:
    """A short markdown table of the report."""
    lines = [
        f"# Codec benchmark, {report['date']}",
        "",
        f"Typical result: {report['result_bytes']} bytes of JSON. One core, "
        f"Python {report['python']}, msgspec {report['msgspec']}, orjson {report['orjson']}; "
        f"median of {report['repeats']} runs (best in brackets).",
        "",
        "| operation | records/s | µs each |",
        "|---|---:|---:|",
    ]
    for figure in report["figures"].values():
        rate = f"{figure['per_s']:,} ({figure['best_per_s']:,})"
        lines.append(f"| {figure['what']} | {rate} | {figure['us_each']} |")
    lines.append(
        f"| the old C decoder (schemas/_fastrow.c, removed): decode + validate + row, "
        f"2026-11-26 | | {report['old_c_path_us']} |"
    )
    t = report["targets"]
    verdict = "meets" if report["meets_target"] else "MISSES"
    lines += [
        "",
        f"decode + validate: {t['decode_us']['got']} µs, {verdict} the target of "
        f"≤ {t['decode_us']['wanted']} µs. The sink's decode + row: "
        f"{t['sink_row_us_vs_old_c']['got']} µs (the removed C path: "
        f"{t['sink_row_us_vs_old_c']['wanted']} µs).",
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
