"""The operations endpoint of a service: Prometheus `/metrics` and a `/healthz` JSON check.

A deliberately tiny HTTP/1.0 server on asyncio: two GET routes, no dependencies beyond
prometheus_client, bounded request size and a read deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("fleetrun.ops")

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


def all_healthy(*checks: HealthCheck) -> HealthCheck:
    """One check made of several (a service's own, its dependencies'): healthy when every one
    is, with their details merged."""

    def check() -> tuple[bool, dict[str, Any]]:
        healthy, details = True, {}
        for each in checks:
            ok, more = each()
            healthy = healthy and ok
            details.update(more)
        return healthy, details

    return check


class OpsServer:
    """Serves /metrics from `registry` and /healthz from `health` (200 if healthy, else 503)."""

    def __init__(
        self, registry: CollectorRegistry, health: HealthCheck, host: str, port: int
    ) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])  # port 0 means "any free port": report the real one
        log.info("ops endpoint listening", extra={"address": f"{self.host}:{self.port}"})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readuntil(b"\r\n\r\n")
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            status, ctype, body = self._route(method, path)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        head = f"HTTP/1.0 {status} {'OK' if status == 200 else 'ERROR'}\r\n"
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
        with contextlib.suppress(ConnectionError, TimeoutError):
            writer.write(head.encode() + body)
            async with asyncio.timeout(5):
                await writer.drain()
        writer.close()

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method != "GET":
            return 405, "text/plain", b"GET only\n"
        route = path.split("?", 1)[0]
        if route == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if route in ("/healthz", "/health"):
            ok, details = self.health()
            return (200 if ok else 503), "application/json", orjson.dumps({"ok": ok, **details})
        return 404, "text/plain", b"not found: try /metrics or /healthz\n"
