"""Sink benchmark: drain a backlog of 1 KiB results from Kafka into PostgreSQL, three ways.

    .venv/bin/python -m bench.bench_sink [--rows 1000000] [--naive-rows 20000]

Against the local stack (`make stack-up`; FLEETRUN_STACK_* variables pick the instance):
1. produce `rows` results (about 1 KiB each, 100 hosts per request) into fresh topics;
2. the sink (`fleetrun sink`, a subprocess, default settings) drains them to committed rows:
   rows/s from its start and from its first stored row, its peak RSS and CPU (psutil); then
   the same with two sink processes in one group;
3. the raw write path alone, for the same rows, in the same run: asyncpg binary COPY into a
   temporary staging table + INSERT … ON CONFLICT DO NOTHING (the issue's baseline), batches
   of 5,000, rows decoded beforehand (not timed), with 1 connection before and after the sink
   and 2 after: the limit of this box; and, for reference, asyncpg binary COPY straight into
   `results` (the sink's path while no redelivered results come) with 1 and 2 connections;
4. a naive writer, one INSERT per result in autocommit (the seed's way), on `naive_rows` rows,
   extrapolated.
Each writer gets its own freshly migrated database. Writes bench/results/<date>-sink.json and
.md; bounded: every phase has a deadline, and the whole run takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from bench.bench_codec import typical_result
from bench.measure import write_results
from schemas import Result, decode_result, encode, format_timestamp
from sink.migrate import migrate
from sink.partitions import Partitions
from sink.rows import RESULT_COLUMNS, decode_result_record
from sink.settings import SinkSettings
from stack.config import TOPIC_PARTITIONS
from stack.env import StackEnv, kafka_admin_environ, kafka_options
from stack.proc import stop_process
from stack.topics import committed_with, create_topics, delete_topics

HOSTS_PER_REQUEST = 100
RAW_BATCH = 5_000
PHASE_DEADLINE_S = 240.0
TARGET_ROWS_PER_S = 50_000
TARGET_TWO_SINKS_ROWS_PER_S = 65_000
TARGET_RAW_SHARE = 0.5
TARGET_RSS_MIB = 300


def template() -> Result:
    """The codec benchmark's 1 KiB result, fresh: new request_id and timestamps, and a host
    name of fixed width that `backlog` patches per row."""
    now = datetime.now(UTC)
    return msgspec.structs.replace(
        typical_result(),
        request_id=str(uuid.uuid4()),
        host="web00000.dc1",
        started_at=format_timestamp(now - timedelta(milliseconds=152)),
        finished_at=format_timestamp(now),
    )


def backlog(rows: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of `rows` distinct results: one encode per request, hosts patched in."""
    base = template()
    for first in range(0, rows, HOSTS_PER_REQUEST):
        request_id = str(uuid.uuid4())
        raw = encode(msgspec.structs.replace(base, request_id=request_id))
        key = request_id.encode()
        for i in range(first, min(rows, first + HOSTS_PER_REQUEST)):
            # The host name has a fixed width, so patching it keeps the JSON valid and sized.
            yield key, raw.replace(b'"web00000.dc1"', f'"web{i % 100_000:05d}.dc1"'.encode(), 1)


async def produce(bootstrap: str, topic: str, rows: int, partitions: int) -> float:
    """Write the backlog with batch builders (one per partition); returns seconds taken."""
    started = time.perf_counter()
    producer = AIOKafkaProducer(
        **kafka_options(bootstrap), acks=1, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        async with asyncio.timeout(PHASE_DEADLINE_S):
            pending: list[asyncio.Future[Any]] = []
            batches = [producer.create_batch() for _ in range(partitions)]
            for n, (key, value) in enumerate(backlog(rows)):
                # All hosts of a request go to one partition, as the collector keys them.
                part = (n // HOSTS_PER_REQUEST) % partitions
                if batches[part].append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batches[part], topic, partition=part))
                    batches[part] = producer.create_batch()
                    batches[part].append(key=key, value=value, timestamp=None)
                if len(pending) > 64:
                    await asyncio.gather(*pending)
                    pending.clear()
            for part, batch in enumerate(batches):
                if batch.record_count():
                    pending.append(await producer.send_batch(batch, topic, partition=part))
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


@asynccontextmanager
async def fresh_database(admin_dsn: str, name: str) -> AsyncIterator[str]:
    """A new, migrated database with partitions; dropped afterwards."""
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=60)
        await admin.execute(f'CREATE DATABASE "{name}"', timeout=60)
    finally:
        await admin.close(timeout=10)
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await migrate(conn)
        await Partitions(SinkSettings(pg_dsn=SecretStr(dsn))).maintain(conn)
    finally:
        await conn.close(timeout=10)
    try:
        yield dsn
    finally:
        await drop_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop a benchmark database; autovacuum on the fresh rows may hold it for a moment."""
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        for attempt in range(10):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=60)
                return
            except asyncpg.InsufficientPrivilegeError:  # an autovacuum worker is in it
                await asyncio.sleep(1 + attempt)
        print(f"bench: could not drop database {name}; drop it by hand", file=sys.stderr)
    finally:
        await admin.close(timeout=10)


async def run_sink(
    env: StackEnv, prefix: str, dsn: str, rows: int, processes: int = 1
) -> dict[str, Any]:
    """Start `processes` × `fleetrun sink` in one group; wait until every row is stored and
    committed; measure."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    proc_env = {
        **os.environ,
        "FLEETRUN_KAFKA_BOOTSTRAP": env.kafka_bootstrap,
        "FLEETRUN_TOPIC_PREFIX": prefix,
        "FLEETRUN_PG_DSN": dsn,
        **kafka_admin_environ(),  # the benchmark's own topics: the stack's super user
        "FLEETRUN_SINK_GROUP_ID": group,
        "FLEETRUN_SINK_OPS_PORT": "0",
        "FLEETRUN_SINK_LOG_LEVEL": "WARNING",
    }
    results_topic = prefix + "results"
    conn = await asyncpg.connect(dsn, timeout=10)
    admin = AIOKafkaAdminClient(**kafka_options(env.kafka_bootstrap), request_timeout_ms=10_000)
    await admin.start()
    started = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", "fleetrun", "sink", env=proc_env)
        for _ in range(processes)
    ]
    watched = [psutil.Process(p.pid) for p in procs]
    peak_rss = [0] * processes
    cpu = [0.0] * processes
    waited = [0.0] * processes
    loads: list[float] = []
    first_row_at: float | None = None
    try:
        async with asyncio.timeout(PHASE_DEADLINE_S):
            while True:
                for i, ps in enumerate(watched):
                    peak_rss[i] = max(peak_rss[i], ps.memory_info().rss)
                    times = ps.cpu_times()
                    cpu[i] = times.user + times.system
                    waited[i] = runqueue_wait_s(ps.pid)
                loads.append(os.getloadavg()[0])
                if any(p.returncode is not None for p in procs):
                    raise RuntimeError("a sink exited early")
                # Progress is read from the committed offsets (the sink commits only after the
                # rows are committed): a count(*) of the growing table every 100 ms would be a
                # parallel scan of up to a GB competing with the sink for the same two cores.
                if first_row_at is None and await conn.fetchval(_ANY_ROW, timeout=30):
                    first_row_at = time.perf_counter()
                if await committed_with(admin, group, results_topic) >= rows:
                    break
                await asyncio.sleep(0.1)
        done = time.perf_counter()
        stored = await conn.fetchval("SELECT count(*) FROM results", timeout=60)
    finally:
        for proc in procs:
            await stop_process(proc, 30)
        await admin.close()
        await conn.close(timeout=10)
    if stored != rows:
        raise RuntimeError(f"offsets of {rows:,} records committed but {stored:,} rows stored")
    assert first_row_at is not None
    return {
        "processes": processes,
        "rows": stored,
        "seconds_from_start": round(done - started, 2),
        "rows_per_s_from_start": round(rows / (done - started)),
        "seconds_from_first_row": round(done - first_row_at, 2),
        "rows_per_s": round(rows / (done - first_row_at)),
        "peak_rss_mib": round(max(peak_rss) / 2**20, 1),
        "sink_cpu_s": round(sum(cpu), 1),
        "cpu_us_per_row": round(sum(cpu) / rows * 1e6, 1),
        # Time the sink was ready to run but every CPU was busy (other processes included).
        "runqueue_wait_s": round(sum(waited), 1),
        "load_avg_1m_mean": round(sum(loads) / max(len(loads), 1), 2),
    }


def runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of `pid` spent runnable but not running (Linux schedstat)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return total / 1e9


async def read_back(bootstrap: str, topic: str, rows: int) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The backlog again, decoded into results rows, RAW_BATCH at a time (not timed)."""
    consumer = AIOKafkaConsumer(
        topic, **kafka_options(bootstrap), group_id=None, auto_offset_reset="earliest",
        enable_auto_commit=False, max_poll_records=RAW_BATCH, fetch_max_bytes=16 << 20,
    )  # fmt: skip
    await consumer.start()
    seen = 0
    batch: list[tuple[Any, ...]] = []
    try:
        async with asyncio.timeout(PHASE_DEADLINE_S):
            while seen < rows:
                data = await consumer.getmany(timeout_ms=500, max_records=RAW_BATCH)
                for records in data.values():
                    for rec in records:
                        batch.append(decode_result_record(rec.value, rec.partition, rec.offset))
                        seen += 1
                        if len(batch) == RAW_BATCH:
                            yield batch
                            batch = []
            if batch:
                yield batch
    finally:
        await consumer.stop()


_ANY_ROW = "SELECT EXISTS (SELECT 1 FROM results)"
_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS stage ON COMMIT DELETE ROWS AS
SELECT {", ".join(RESULT_COLUMNS)} FROM results WITH NO DATA
"""  # noqa: S608
_UPSERT = f"""
INSERT INTO results ({", ".join(RESULT_COLUMNS)}) SELECT {", ".join(RESULT_COLUMNS)} FROM stage
ON CONFLICT (request_id, host, attempt, finished_at) DO NOTHING
"""  # noqa: S608


async def decoded_batches(bootstrap: str, topic: str, rows: int) -> list[list[tuple[Any, ...]]]:
    """The whole backlog as results rows in RAW_BATCH batches, decoded once for every raw run."""
    return [batch async for batch in read_back(bootstrap, topic, rows)]


async def run_raw(
    dsn: str, batches: list[list[tuple[Any, ...]]], workers: int, *, direct: bool = False
) -> dict[str, Any]:
    """COPY into staging + upsert (or with `direct`, COPY into results) over `workers`
    connections; only the database part is timed."""
    pool = await asyncpg.create_pool(
        dsn, min_size=workers, max_size=workers, init=lambda c: c.execute(_STAGE),
        server_settings={"jit": "off"},
    )  # fmt: skip
    queue: asyncio.Queue[list[tuple[Any, ...]] | None] = asyncio.Queue(maxsize=workers * 2)
    written = 0

    async def writer() -> None:
        nonlocal written
        while (batch := await queue.get()) is not None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table(
                    "results" if direct else "stage", records=batch,
                    columns=list(RESULT_COLUMNS), timeout=60,
                )  # fmt: skip
                if direct:
                    written += len(batch)
                    continue
                status = await conn.execute(_UPSERT, timeout=60)
            written += int(status.rsplit(" ", 1)[-1])

    try:
        tasks = [asyncio.create_task(writer()) for _ in range(workers)]
        started = time.perf_counter()
        async with asyncio.timeout(PHASE_DEADLINE_S):
            for batch in batches:
                await queue.put(batch)
            for _ in tasks:
                await queue.put(None)
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    return {
        "path": "direct" if direct else "staged",
        "connections": workers,
        "rows": written,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(written / elapsed),
    }


async def run_naive(dsn: str, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """One INSERT per result, autocommit, like the seed script."""
    conn = await asyncpg.connect(dsn, timeout=10)
    values = ", ".join(f"${i + 1}" for i in range(len(RESULT_COLUMNS)))
    sql = f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) VALUES ({values})"  # noqa: S608
    try:
        started = time.perf_counter()
        async with asyncio.timeout(PHASE_DEADLINE_S):
            for row in rows:
                await conn.execute(sql, *row, timeout=30)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close(timeout=10)
    return {
        "rows": len(rows),
        "seconds": round(elapsed, 2),
        "rows_per_s": round(len(rows) / elapsed),
    }


def decode_cost(n: int = 20_000) -> dict[str, float]:
    """µs per record, in this process (one core), best of 5, of the sink's decode + row building
    (sink.rows.decode_result_record) and of decoding alone (schemas.decode_result)."""
    values = [v for _, v in backlog(n)]
    ways: dict[str, Callable[[bytes, int], object]] = {
        "sink": lambda value, i: decode_result_record(value, 0, i),
        "decode": lambda value, i: decode_result(value),
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(5):
        for name, way in ways.items():  # interleaved: the box's load drifts
            started = time.process_time()
            for i, value in enumerate(values):
                way(value, i)
            best[name] = min(best[name], time.process_time() - started)
    return {name: round(seconds / n * 1e6, 2) for name, seconds in best.items()}


async def bench(rows: int, naive_count: int) -> dict[str, Any]:
    """Run every phase and return the report."""
    env = StackEnv.load()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    topics = await create_topics(env.kafka_bootstrap, prefix, timeout_s=60)
    topic = prefix + "results"
    tag = uuid.uuid4().hex[:6]
    report: dict[str, Any] = {"rows": rows, "record_bytes": len(next(backlog(1))[1])}
    try:
        report["produce_s"] = round(
            await produce(env.kafka_bootstrap, topic, rows, TOPIC_PARTITIONS["results"]), 1
        )
        batches = await decoded_batches(env.kafka_bootstrap, topic, rows)
        report["raw"] = []
        report["sink_scaling"] = []
        # Raw before and after the sink: the box is shared and its load drifts.
        steps = ("raw1", "direct1", "sink1", "raw1", "raw2", "direct2", "sink2")
        for step in steps:
            count = int(step[-1])
            if step.startswith("sink"):
                async with fresh_database(env.pg_dsn, f"bench_sink_{tag}") as dsn:
                    run = await run_sink(env, prefix, dsn, rows, processes=count)
                if count == 1:
                    report["sink"] = run
                report["sink_scaling"].append(run)
                continue
            async with fresh_database(env.pg_dsn, f"bench_raw_{tag}") as dsn:
                raw = await run_raw(dsn, batches, count, direct=step.startswith("direct"))
            raw["when"] = "after the sink" if "sink" in report else "before the sink"
            report["raw"].append(raw)
        sample = [row for batch in batches for row in batch][:naive_count]
        del batches
        async with fresh_database(env.pg_dsn, f"bench_naive_{tag}") as dsn:
            report["naive"] = await run_naive(dsn, sample)
        cost = decode_cost()
        report["decode_us_per_row"] = cost["sink"]
        report["decode_only_us_per_row"] = cost["decode"]
    finally:
        # The request timeout this call always had (aiokafka's default), not the tests' 10 s.
        await delete_topics(env.kafka_bootstrap, topics, timeout_s=40.0)
    staged = [r for r in report["raw"] if r["path"] == "staged"]
    raw_best = max(r["rows_per_s"] for r in staged)
    direct_best = max(r["rows_per_s"] for r in report["raw"] if r["path"] == "direct")
    sink_rate = report["sink"]["rows_per_s"]
    raw1 = [r["rows_per_s"] for r in staged if r["connections"] == 1]
    report["raw_best_rows_per_s"] = raw_best
    report["raw_direct_best_rows_per_s"] = direct_best
    report["sink_share_of_raw_direct"] = round(sink_rate / direct_best, 2)
    report["sink_share_of_raw"] = round(sink_rate / raw_best, 2)
    report["sink_share_of_raw_1_connection"] = round(sink_rate / (sum(raw1) / len(raw1)), 2)
    report["sink_vs_naive"] = round(sink_rate / report["naive"]["rows_per_s"], 1)
    two = max(run["rows_per_s"] for run in report["sink_scaling"] if run["processes"] == 2)
    report["targets"] = {
        "sink_rows_per_s": [TARGET_ROWS_PER_S, sink_rate >= TARGET_ROWS_PER_S],
        "two_sinks_rows_per_s": [TARGET_TWO_SINKS_ROWS_PER_S, two >= TARGET_TWO_SINKS_ROWS_PER_S],
        "share_of_raw": [TARGET_RAW_SHARE, sink_rate >= TARGET_RAW_SHARE * raw_best],
        "peak_rss_mib": [TARGET_RSS_MIB, report["sink"]["peak_rss_mib"] <= TARGET_RSS_MIB],
    }
    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    return report


def markdown(r: dict[str, Any], day: date) -> str:
    """The report as a markdown page."""
    s, n = r["sink"], r["naive"]
    lines = [
        f"# Sink benchmark, {day.isoformat()}",
        "",
        f"Backlog: {r['rows']:,} results of {r['record_bytes']} bytes already in the topic "
        f"(12 partitions, {HOSTS_PER_REQUEST} hosts per request), produced in "
        f"{r['produce_s']} s. {r['machine']['cpus']} CPUs shared by Kafka, PostgreSQL and the "
        f"writer; Python {r['machine']['python']}; load average {r['machine']['load_avg_1m']} "
        "at the end.",
        "",
        "| writer | rows | seconds | rows/s |",
        "|---|---:|---:|---:|",
        f"| sink (`fleetrun sink`, defaults), first row to last commit | {s['rows']:,} | "
        f"{s['seconds_from_first_row']} | **{s['rows_per_s']:,}** |",
        f"| sink, process start to last commit | {s['rows']:,} | {s['seconds_from_start']} | "
        f"{s['rows_per_s_from_start']:,} |",
    ]
    for run in r["sink_scaling"][1:]:
        lines.append(
            f"| sink, {run['processes']} processes in one group, first row to last commit | "
            f"{run['rows']:,} | {run['seconds_from_first_row']} | {run['rows_per_s']:,} |"
        )
    for raw in r["raw"]:
        way = (
            "COPY into results" if raw["path"] == "direct"
            else "COPY→staging + INSERT ON CONFLICT"
        )  # fmt: skip
        lines.append(
            f"| raw asyncpg {way}, {raw['connections']} "
            f"connection(s), pre-decoded rows, {raw['when']} | {raw['rows']:,} | "
            f"{raw['seconds']} | {raw['rows_per_s']:,} |"
        )
    lines += [
        f"| naive: one INSERT per result, autocommit (the seed's way) | {n['rows']:,} | "
        f"{n['seconds']} | {n['rows_per_s']:,} |",
        "",
        f"While the sink ran, the 1-minute load average was {s['load_avg_1m_mean']} on "
        f"{r['machine']['cpus']} CPUs and the sink waited {s['runqueue_wait_s']} s for a CPU "
        "(runnable, not running: the box is shared with other work).",
        "",
        f"Sink peak RSS: {s['peak_rss_mib']} MiB; sink CPU: {s['sink_cpu_s']} s "
        f"({s['cpu_us_per_row']} µs per row, of which decoding + validating + row building "
        f"(sink.rows.decode_result_record) alone take {r['decode_us_per_row']} µs on one core, "
        f"decoding alone {r['decode_only_us_per_row']} µs). "
        "Sink / best raw (staging + upsert, the issue's baseline): "
        f"{r['sink_share_of_raw']}× (/ raw with 1 connection, mean of before and after: "
        f"{r['sink_share_of_raw_1_connection']}×); sink / best raw COPY into results: "
        f"{r['sink_share_of_raw_direct']}×; sink / naive: {r['sink_vs_naive']}×.",
        "",
        "| target | wanted | met |",
        "|---|---:|:---:|",
    ]
    for name, (wanted, met) in r["targets"].items():
        lines.append(f"| {name} | {wanted} | {'yes' if met else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print JSON, write bench/results/<date>-sink.{json,md}."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sink", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-rows", type=int, default=20_000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    report = asyncio.run(bench(args.rows, min(args.naive_rows, args.rows)))
    print(json.dumps(report, indent=2))
    if not args.no_write:
        day = date.today()
        write_results("sink", day.isoformat(), report, markdown(report, day))
    return 0


if __name__ == "__main__":
    sys.exit(main())
