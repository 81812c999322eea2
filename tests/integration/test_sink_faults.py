"""The sink under faults: PostgreSQL stopped under a steady stream, the sink SIGKILLed mid-batch.

These stop and start the stack's PostgreSQL (the one FLEETRUN_STACK_* points at) and run the
sink as a real process, so what is tested is what an operator would see.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from schemas import Result, encode
from stack.env import StackEnv, kafka_options
from stack.topics import committed_total
from tests.support.kafka import Topics
from tests.support.sink import (
    ROOT,
    MakeSink,
    SinkProcess,
    fetch,
    key_of,
    produce_results,
    results_for,
    stored_keys,
    wait_committed,
    wait_for_rows,
)

OUTAGE_S = 20.0


def _stack(command: str, service: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "stack", command, service],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def postgres_restarts() -> Iterator[None]:
    """Whatever happens in the test, PostgreSQL is up again afterwards."""
    yield
    _stack("start", "postgres")


async def _steady_stream(bootstrap: str, topic: str, results: list[Result], seconds: float) -> None:
    """Publish `results` evenly over `seconds` (bounded in count and time)."""
    producer = AIOKafkaProducer(**kafka_options(bootstrap), acks="all", linger_ms=5)
    await producer.start()
    try:
        async with asyncio.timeout(seconds + 60):
            started = time.monotonic()
            pending = []
            for i, r in enumerate(results):
                due = started + seconds * i / len(results)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                pending.append(await producer.send(topic, encode(r), key=r.request_id.encode()))
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def test_postgres_down_for_20s_under_a_steady_stream_loses_and_duplicates_nothing(
    stack_env: StackEnv,
    topics: Topics,
    pg_dsn: str,
    sinks: MakeSink,
    postgres_restarts: None,
) -> None:
    results = results_for(2_000, hosts_per_request=20)
    sink = sinks()
    await sink.start()
    stream = asyncio.create_task(
        _steady_stream(stack_env.kafka_bootstrap, topics["results"], results, seconds=28)
    )
    try:
        await wait_for_rows(pg_dsn, 100, timeout_s=30)
        await asyncio.to_thread(_stack, "stop", "postgres")
        outage_started = time.monotonic()
        # The outage itself is the scenario: PostgreSQL stays down for 20 s while records flow.
        async with asyncio.timeout(OUTAGE_S + 10):
            while time.monotonic() - outage_started < OUTAGE_S:
                assert sink.alive()
                status, body = await sink.get("/healthz")
                await asyncio.sleep(1)
        assert (status, orjson.loads(body)["database"]) == (503, "down")
        assert await sink.metric("fleetrun_sink_paused_partitions") > 0
        await asyncio.to_thread(_stack, "start", "postgres")
        await stream
    finally:
        stream.cancel()
    await wait_for_rows(pg_dsn, len(results), timeout_s=90)
    await wait_committed(stack_env.kafka_bootstrap, sink.group, topics["results"], len(results), 60)

    assert Counter(await stored_keys(pg_dsn)) == Counter(key_of(r) for r in results)
    assert sink.alive()  # recovered by itself, no restart
    assert await sink.metric('fleetrun_sink_retries_total{operation="flush"}') > 0
    status, body = await sink.get("/healthz")
    assert (status, orjson.loads(body)["database"]) == (200, "up")
    log = sink.log()
    assert "database unavailable" in log
    assert "database available again" in log
    assert await sink.stop() == 0


# The sink's own connections to the test's database: how many, and how many are running a
# statement (a server-side request not answered yet; COPY waiting for the rest of its rows is one).
_SINK_BACKENDS = """
SELECT count(*) FILTER (WHERE state = 'active'), count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()
"""


async def _stored_and_committed(
    conn: asyncpg.Connection, bootstrap: str, group: str, topic: str
) -> tuple[int, int]:
    stored = int(await conn.fetchval("SELECT count(*) FROM results", timeout=30))
    return stored, await committed_total(bootstrap, group, topic)


async def _settled(
    dsn: str, bootstrap: str, group: str, topic: str, *, killed: bool, timeout_s: float
) -> tuple[int, int] | None:
    """(rows stored, offsets committed) once nothing the sink sent is still being worked on.

    Frozen (`killed` false): none of its database connections is running a statement. Killed:
    its connections are gone, so each of its transactions has committed or rolled back. Then
    the counts must read the same twice in a row, so that an offset commit the broker had
    already received is in them. None if that does not happen within `timeout_s` (frozen
    mid-statement, the server waits for the rest of it for ever); killed, that fails the test.
    """
    conn = await asyncpg.connect(dsn, timeout=10)
    last: tuple[int, int] | None = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                backends = await conn.fetchrow(_SINK_BACKENDS, timeout=10)
                assert backends is not None
                active, connected = backends
                busy = connected if killed else active
                if busy:
                    last = None
                else:
                    now = await _stored_and_committed(conn, bootstrap, group, topic)
                    if now == last:
                        return now
                    last = now
                await asyncio.sleep(0.05)
    except TimeoutError:
        if killed:
            raise
        return None
    finally:
        await conn.close(timeout=10)


async def _kill_between_database_and_kafka_commits(
    sink: SinkProcess, dsn: str, bootstrap: str, topic: str
) -> tuple[int, int]:
    """SIGKILL the sink at a moment when some batches are stored but not yet committed.

    The process is frozen (SIGSTOP) first, and what is stored and what is committed is read
    once the servers have answered everything it sent (so the kill cannot change it); if it is
    frozen mid-statement, or no batch is caught between its two commits, it runs on until it
    has stored or committed more and is frozen again. Returns (rows stored, offsets committed)
    once the kill has settled. The freeze stays well inside the group's session timeout (6 s,
    heartbeats every 2 s): a rebalance would re-read and count duplicates of its own.
    """
    group = sink.group
    async with asyncio.timeout(120):
        while True:
            sink.suspend()
            frozen = await _settled(dsn, bootstrap, group, topic, killed=False, timeout_s=2)
            if frozen is not None and frozen[0] > frozen[1]:
                await sink.kill()
                break
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                now = frozen or await _stored_and_committed(conn, bootstrap, group, topic)
                before = now
                sink.resume()
                while now == before:
                    await asyncio.sleep(0.05)
                    now = await _stored_and_committed(conn, bootstrap, group, topic)
            finally:
                await conn.close(timeout=10)
    settled = await _settled(dsn, bootstrap, group, topic, killed=True, timeout_s=30)
    assert settled is not None
    return settled


async def test_sigkill_mid_batch_then_restart_stores_every_result_exactly_once(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    n = 60_000
    results = results_for(n, hosts_per_request=50)
    await produce_results(stack_env.kafka_bootstrap, topics["results"], results)
    bootstrap, topic = stack_env.kafka_bootstrap, topics["results"]
    # Small batches and several flushes in flight: at any moment some are being written.
    sink = sinks(batch_max_rows=300, max_inflight_flushes=3)
    redelivered = total_redelivered = 0
    for progress in (n // 4, n // 2):
        await sink.start()
        # Stored but uncommitted rows of the previous kill come again, and are skipped.
        await sink.wait_metric(
            "fleetrun_sink_duplicate_results_total",
            lambda count: count >= redelivered,  # noqa: B023 - awaited within this iteration
            timeout_s=90,
        )
        await wait_for_rows(pg_dsn, progress, timeout_s=90)
        assert await sink.metric("fleetrun_sink_duplicate_results_total") == redelivered
        stored, committed = await _kill_between_database_and_kafka_commits(
            sink, pg_dsn, bootstrap, topic
        )
        assert committed <= stored < n  # mid-stream, and commits never run ahead of rows
        redelivered = stored - committed
        total_redelivered += redelivered
    await sink.start()
    await wait_for_rows(pg_dsn, n, timeout_s=120)
    await wait_committed(bootstrap, sink.group, topic, n, 60)
    assert await sink.metric("fleetrun_sink_duplicate_results_total") == redelivered
    assert total_redelivered > 0  # the kills did land between a database and a Kafka commit
    assert Counter(await stored_keys(pg_dsn)) == Counter(key_of(r) for r in results)
    assert (await fetch(pg_dsn, "SELECT count(*) FROM dead_letters"))[0][0] == 0
    assert await sink.stop() == 0
