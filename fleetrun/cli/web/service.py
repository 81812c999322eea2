"""`fleetrun web` as a process: the store, the live feed, probes for /healthz, uvicorn.

uvicorn serves the Starlette app inside this service's own event loop; the service, not
uvicorn, owns the signals (runtime/process.on_signals), so shutdown is one sequence: stop
accepting, end the live streams, stop the feed, close the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Final

import uvicorn

from fleetrun.cli.web.app import Console, build_app
from fleetrun.cli.web.live import Hub, LiveFeed
from fleetrun.cli.web.metrics import WebMetrics
from fleetrun.cli.web.settings import WebSettings
from fleetrun.cli.web.store import Store
from fleetrun.runtime import outage, process
from fleetrun.runtime.kafkaauth import client_options
from fleetrun.runtime.ops import all_healthy
from fleetrun.runtime.probes import KafkaProbe, PostgresProbe, Probe

log = logging.getLogger("fleetrun.web")

_PROBE_TIMEOUT_S: Final = 2.0
START_TIMEOUT_S: Final = 30.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service stops it (see module docstring)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebConsole:
    """One running console; `start()` returns once it accepts connections (port 0: any)."""

    def __init__(
        self,
        settings: WebSettings,
        metrics: WebMetrics | None = None,
        outages: outage.Outages | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or WebMetrics()
        self.outages = outages or outage.tracker()  # the process's (its logs report there)
        self.store = Store(settings)
        self.hub = Hub(settings.live_queue, on_overflow=self.metrics.live_overflows.inc)
        self.feed = LiveFeed(
            client_options(settings),
            settings.topic_prefix,
            self.hub,
            self.outages,
            timeout_s=settings.kafka_timeout_s,
            on_record=lambda topic: self.metrics.records.labels(topic).inc(),
        )
        self.closing = asyncio.Event()
        self.health = all_healthy(self._health, lambda: self.outages.health(["kafka", "database"]))
        console = Console(settings, self.store, self.hub, self.metrics, self.health, self.closing)
        config = uvicorn.Config(
            build_app(console),
            host=settings.host,
            port=settings.port,
            log_config=None,
            log_level="warning",  # its start-up lines repeat what the service logs itself
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config)
        self.port = settings.port
        self._tasks: list[asyncio.Task[Any]] = []
        self._probes: list[Probe] = []

    def _health(self) -> tuple[bool, dict[str, Any]]:
        return self.feed.running, {
            "live_feed": self.feed.running,
            "live_pages": self.hub.subscribers,
        }

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def start(self) -> None:
        """Open the pool, start the feed and the probes, serve; raise if serving fails."""
        s = self.settings
        await self.store.open()
        self._probes = [
            KafkaProbe(client_options(s), "fleetrun-web-probe", _PROBE_TIMEOUT_S),
            PostgresProbe(s.pg_dsn.get_secret_value(), _PROBE_TIMEOUT_S, "fleetrun-web probe"),
        ]
        self._tasks = [
            asyncio.create_task(self.feed.run(self.closing), name="live-feed"),
            *(
                asyncio.create_task(
                    outage.watch(self.outages, name, probe, timeout_s=_PROBE_TIMEOUT_S)
                )
                for name, probe in zip(("kafka", "database"), self._probes, strict=True)
            ),
        ]
        serving = asyncio.create_task(self.server.serve(), name="uvicorn")
        self._tasks.append(serving)
        async with asyncio.timeout(START_TIMEOUT_S):
            while not self.server.started:
                if serving.done():
                    await serving  # raises why it could not serve
                    raise OSError(f"cannot serve on {s.host}:{s.port}")
                await asyncio.sleep(0.02)
        sockets = [sock for srv in self.server.servers for sock in srv.sockets]
        self.port = int(sockets[0].getsockname()[1])
        log.info("web console listening", extra={"url": self.url})

    async def stop(self) -> None:
        """Stop in order: live streams end, uvicorn stops, the feed and probes end, pool closes."""
        self.closing.set()
        self.server.should_exit = True
        for task in reversed(self._tasks):
            if task.get_name() != "uvicorn":
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for probe in self._probes:
            await probe.close()
        await self.store.close()


async def serve(settings: WebSettings) -> int:
    """Run the console until SIGTERM/SIGINT; the process's exit code."""
    console = WebConsole(settings)
    stop = asyncio.Event()
    with process.on_signals(lambda _sig: stop.set()):
        try:
            await console.start()
            await stop.wait()
        finally:
            await console.stop()
    return process.EXIT_OK
