"""Dependency outages as an operator sees them: /healthz and the log of the real services.

The shared Kafka and PostgreSQL keep running: each service under test reaches its dependency
through a proxy of the test's own (tests/support/kafkaproxy.py for Kafka, whose answers would
otherwise send the client straight to the broker), and the test cuts the proxy and refuses new
connections for ~10 s. /healthz must turn 503 within a few seconds, naming the dependency and
since when, stay so, and turn 200 when the proxy lets connections through again; the log must
say so in a handful of lines, not one per retry.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from stack.env import StackEnv
from tests.support.collector import collector_process
from tests.support.kafka import Topics
from tests.support.kafkaproxy import kafka_proxy
from tests.support.net import http_get
from tests.support.sink import MakeSink, make_result, produce_results, wait_for_rows
from tests.support.tcpproxy import TcpProxy

CUT_S = 10.0
NOTICED_WITHIN_S = 5.0  # probes run every 2 s with a 2 s deadline
BACK_WITHIN_S = 15.0
# A cut of CUT_S is one line saying the dependency went, plus the first line of each kind the
# client library writes about it (the rest are folded and counted): a handful. Before folding
# an idle collector wrote ~80 lines a second.
MOST_LINES = 8

_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", re.MULTILINE)


async def _health(port: int) -> tuple[int, dict[str, Any]]:
    status, body = await http_get(port, "/healthz", timeout_s=5)
    doc: dict[str, Any] = orjson.loads(body)
    return status, doc


async def _wait_health(port: int, status: int, timeout_s: float) -> dict[str, Any]:
    """Poll /healthz until it answers `status`; that document."""
    last: tuple[int, dict[str, Any]] | None = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                last = await _health(port)
                if last[0] == status:
                    return last[1]
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"/healthz not {status} within {timeout_s}s; last: {last}") from None


async def _cut(
    proxy: TcpProxy, port: int, dependency: str, log: Path
) -> tuple[dict[str, Any], str]:
    """Take the dependency away for CUT_S: /healthz must say so within NOTICED_WITHIN_S and
    keep saying so. Returns the first unhealthy document and what was logged meanwhile."""
    start = _size(log)
    began = time.monotonic()
    proxy.refuse = True
    proxy.cut()
    down = await _wait_health(port, 503, NOTICED_WITHIN_S)
    noticed_s = time.monotonic() - began
    # The outage is the scenario: it lasts CUT_S, and /healthz must not recover meanwhile.
    while time.monotonic() - began < CUT_S:
        status, doc = await _health(port)
        assert status == 503, doc
        assert doc["dependencies"][dependency]["up"] is False, doc
        await asyncio.sleep(0.2)
    logged = _text_from(log, start)
    proxy.refuse = False
    assert noticed_s < NOTICED_WITHIN_S
    return down, logged


def _size(log: Path) -> int:
    return log.stat().st_size


def _text_from(log: Path, offset: int) -> str:
    with log.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _assert_names(doc: dict[str, Any], dependency: str) -> None:
    assert doc["ok"] is False
    state = doc["dependencies"][dependency]
    assert state["up"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", state["since"]), state
    assert state["error"], state


def _assert_quiet(logged: str, dependency: str) -> None:
    records = _RECORD.findall(logged)
    assert len(records) <= MOST_LINES, f"{len(records)} log records during the cut:\n{logged}"
    assert f"{dependency} unavailable" in logged, logged


async def test_collector_health_and_log_follow_kafka_through_a_cut(
    topics: Topics, stack_env: StackEnv, tmp_path: Path
) -> None:
    log = tmp_path / "collector.log"
    async with (
        kafka_proxy(stack_env.kafka_bootstrap) as proxy,
        collector_process(topics.prefix, log, kafka_bootstrap=proxy.address) as collector,
    ):
        status, doc = await _health(collector.ops_port)
        assert status == 200, doc
        assert doc["dependencies"]["kafka"]["up"] is True, doc
        down, logged = await _cut(proxy, collector.ops_port, "kafka", log)
        _assert_names(down, "kafka")
        _assert_quiet(logged, "kafka")

        back = await _wait_health(collector.ops_port, 200, BACK_WITHIN_S)
        assert back["dependencies"]["kafka"]["up"] is True
        await collector.wait_log("kafka available again")
    after = log.read_text()
    assert re.search(r"kafka available again .*down_for_s=\d", after), after[-3000:]
    assert re.search(r"aiokafka_lines_folded=\d+", after), after[-3000:]


async def test_sink_health_and_log_follow_kafka_through_a_cut(
    topics: Topics, stack_env: StackEnv, pg_dsn: str, sinks: MakeSink
) -> None:
    async with kafka_proxy(stack_env.kafka_bootstrap) as proxy:
        sink = sinks(kafka_bootstrap=proxy.address)
        await sink.start()
        await _wait_health(sink.ops_port, 200, 10)
        # Results keep coming to the broker (not through the proxy) while the sink is cut off.
        before = [make_result(str(uuid.uuid4()), f"h{i}.test") for i in range(20)]
        during = [make_result(str(uuid.uuid4()), f"h{i}.test") for i in range(20)]
        await produce_results(stack_env.kafka_bootstrap, topics["results"], before)
        await wait_for_rows(pg_dsn, len(before), timeout_s=30)
        cut = asyncio.create_task(_cut(proxy, sink.ops_port, "kafka", sink.log_path))
        await produce_results(stack_env.kafka_bootstrap, topics["results"], during)
        down, logged = await cut
        _assert_names(down, "kafka")
        assert down["database"] == "up"  # only Kafka is away
        _assert_quiet(logged, "kafka")

        back = await _wait_health(sink.ops_port, 200, BACK_WITHIN_S)
        assert back["dependencies"]["kafka"]["up"] is True
        await wait_for_rows(pg_dsn, len(before) + len(during), timeout_s=60)
        assert "kafka available again" in sink.log()
        assert await sink.stop() == 0


async def test_sink_health_and_log_follow_the_database_through_a_cut(
    topics: Topics, stack_env: StackEnv, pg_dsn: str, sinks: MakeSink
) -> None:
    server = pg_dsn.rpartition("@")[2].partition("/")[0]
    host, _, port = server.rpartition(":")
    async with TcpProxy(host, int(port)) as proxy:
        dsn = pg_dsn.replace(f"@{server}/", f"@{proxy.host}:{proxy.port}/")
        sink = sinks(pg_dsn=dsn, retry_backoff_max_s=0.5)
        await sink.start()
        await _wait_health(sink.ops_port, 200, 10)
        # Idle first: only the probe can notice. Results arriving during the cut make the
        # flushes retry too (every 0.5 s at most): those retries must not be a line each.
        cut = asyncio.create_task(_cut(proxy, sink.ops_port, "database", sink.log_path))
        await _wait_health(sink.ops_port, 503, NOTICED_WITHIN_S)
        during = [make_result(str(uuid.uuid4()), f"h{i}.test") for i in range(50)]
        await produce_results(stack_env.kafka_bootstrap, topics["results"], during)
        down, logged = await cut
        _assert_names(down, "database")
        assert down["database"] == "down"
        _assert_quiet(logged, "database")

        back = await _wait_health(sink.ops_port, 200, BACK_WITHIN_S)
        assert back["dependencies"]["database"]["up"] is True
        await wait_for_rows(pg_dsn, len(during), timeout_s=60)
        text = sink.log()
        assert re.search(r"database available again .*flush_retries=\d", text), text[-3000:]
        assert await sink.stop() == 0
