"""The ops endpoint serves metrics and health; log lines carry their fields."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from fleetrun.runtime.logs import JsonFormatter, KeyValueFormatter
from fleetrun.runtime.ops import OpsServer


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10):
        data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_metrics_and_health_endpoints() -> None:
    registry = CollectorRegistry()
    Counter("fleetrun_things", "Things.", registry=registry).inc(3)
    healthy = {"ok": True}

    def health() -> tuple[bool, dict[str, Any]]:
        return healthy["ok"], {"consumer": "running"}

    server = OpsServer(registry, health, "127.0.0.1", 0)
    await server.start()
    try:
        status, body = await _get(server.port, "/metrics")
        assert status == 200
        assert b"fleetrun_things_total 3.0" in body
        status, body = await _get(server.port, "/healthz")
        assert (status, orjson.loads(body)) == (200, {"ok": True, "consumer": "running"})
        healthy["ok"] = False
        status, _ = await _get(server.port, "/healthz")
        assert status == 503
        status, _ = await _get(server.port, "/nope")
        assert status == 404
    finally:
        await server.stop()


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("fleetrun.collector", logging.INFO, __file__, 1, "done", (), None)
    record.__dict__.update(extra)
    return record


def test_key_value_lines_quote_what_needs_quoting() -> None:
    line = KeyValueFormatter().format(_record(request_id="r1", host="web01", error="no route"))
    assert line.endswith('INFO collector done request_id=r1 host=web01 error="no route"')


def test_json_lines_carry_fields() -> None:
    doc = orjson.loads(JsonFormatter().format(_record(request_id="r1", host="h")))
    assert doc["msg"] == "done"
    assert (doc["request_id"], doc["host"]) == ("r1", "h")
