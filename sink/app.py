"""The sink as a process: start in order, stop on SIGTERM/SIGINT.

`fleetrun sink` and `fleetrun migrate` (fleetrun/cli) load the settings and logging at the
edge, then call serve() or migrate_only().
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
from collections.abc import Awaitable, Callable

import asyncpg

from fleetrun.runtime import outage, process
from fleetrun.runtime.backoff import backoff_delay
from fleetrun.runtime.kafkaauth import client_options
from fleetrun.runtime.ops import OpsServer, all_healthy
from fleetrun.runtime.probes import KafkaProbe, PostgresProbe, Probe
from fleetrun.runtime.process import EXIT_OK
from sink.dlq import DeadLetterPublisher
from sink.errors import Action, MigrationError, SinkError, classify, describe
from sink.metrics import SinkMetrics
from sink.migrate import MigrationReport, migrate, pending
from sink.partitions import MaintenanceReport, Partitions
from sink.service import SinkService
from sink.settings import SinkSettings
from sink.store import Store

log = logging.getLogger("fleetrun.sink")

EXIT_FAILED = 1
_PROBE_TIMEOUT_S = 2.0


async def run_migrations(
    settings: SinkSettings,
) -> tuple[MigrationReport, MaintenanceReport]:
    """`fleetrun migrate`: apply pending migrations, then create partitions / apply retention."""
    conn = await asyncpg.connect(
        settings.pg_dsn.get_secret_value(), timeout=settings.pg_connect_timeout_s
    )
    try:
        report = await migrate(conn)
        maintenance = await Partitions(settings).maintain(conn)
    finally:
        await conn.close(timeout=10)
    return report, maintenance


async def _prepare_database(settings: SinkSettings, partitions: Partitions) -> None:
    conn = await asyncpg.connect(
        settings.pg_dsn.get_secret_value(), timeout=settings.pg_connect_timeout_s
    )
    try:
        if settings.migrate_on_start:
            report = await migrate(conn)
            if report.applied:
                log.info("schema migrated", extra={"applied": report.applied})
        else:
            todo = await pending(conn)
            if todo:
                raise MigrationError(
                    f"the database needs migrations {[m.filename for m in todo]}; "
                    "run `fleetrun migrate` (or set FLEETRUN_MIGRATE_ON_START=true)"
                )
        await partitions.maintain(conn)
    finally:
        await conn.close(timeout=10)


async def _until_ready(
    what: str, step: Callable[[], Awaitable[object]], settings: SinkSettings, stop: asyncio.Event
) -> bool:
    """Run `step` until it succeeds, retrying transient failures; False if stopped first."""
    attempt = 0
    while not stop.is_set():
        try:
            await step()
            if attempt:
                outage.tracker().ok(what)
            return True
        except Exception as exc:
            if classify(exc) is not Action.RETRY:
                raise
            attempt += 1
            delay = backoff_delay(
                attempt, settings.retry_backoff_s, settings.retry_backoff_max_s, random.random()
            )
            outage.tracker().failed(what, describe(exc), what="start_retries")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
    return False


async def run_sink(
    settings: SinkSettings,
    stop: asyncio.Event | None = None,
    *,
    metrics: SinkMetrics | None = None,
) -> None:
    """Run the sink until `stop` is set; raises SinkError when it cannot continue."""
    stop = stop or asyncio.Event()
    metrics = metrics or SinkMetrics()
    partitions = Partitions(settings)
    store = Store(settings, partitions)
    dlq = DeadLetterPublisher(settings)
    service = SinkService(settings, store, dlq, metrics)
    outages = service.flusher.outages
    outages.set_context(lambda: _queued(service))
    health = all_healthy(service.health, lambda: outages.health(["kafka", "database"]))
    ops = OpsServer(metrics.registry, health, settings.ops_host, settings.ops_port)
    await ops.start()
    maintenance: asyncio.Task[None] | None = None
    # /healthz must see a dependency go away also while the sink is idle (nothing to flush).
    probes: list[tuple[str, Probe]] = [
        ("kafka", KafkaProbe(client_options(settings), f"fleetrun-sink-{settings.name}-probe",
                             _PROBE_TIMEOUT_S)),
        ("database", PostgresProbe(settings.pg_dsn.get_secret_value(), _PROBE_TIMEOUT_S,
                                   f"fleetrun-sink {settings.name} probe")),
    ]  # fmt: skip
    watching = [
        asyncio.create_task(outage.watch(outages, name, probe, timeout_s=_PROBE_TIMEOUT_S))
        for name, probe in probes
    ]
    try:
        ready = await _until_ready(
            "database", lambda: _prepare_database(settings, partitions), settings, stop
        )
        if not ready:
            return
        await _until_ready("database", store.open, settings, stop)
        await _until_ready("kafka", dlq.start, settings, stop)
        await _until_ready("kafka", service.start, settings, stop)
        if not stop.is_set():
            maintenance = asyncio.create_task(_maintain(store, settings, metrics, stop))
            log.info("sink started", extra={"sink": settings.name, "ops_port": ops.port})
        # Also when stopped while starting: run() then only shuts down what was started.
        await service.run(stop)
    finally:
        for task in [*watching, *([maintenance] if maintenance else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _name, probe in probes:
            await probe.close()
        await ops.stop()


def _queued(service: SinkService) -> dict[str, object]:
    """What the sink holds while a dependency is away, for the outage lines."""
    details = service.health()[1]
    return {k: details[k] for k in ("buffered_bytes", "inflight_flushes", "paused_partitions")}


async def _maintain(
    store: Store, settings: SinkSettings, metrics: SinkMetrics, stop: asyncio.Event
) -> None:
    """Create partitions ahead and apply retention every maintenance_interval_s."""
    delay = settings.maintenance_interval_s
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return
        try:
            report = await store.maintain_partitions()
            metrics.partitions.labels("created").inc(len(report.created))
            metrics.partitions.labels("dropped").inc(len(report.dropped))
            delay = settings.maintenance_interval_s
        except Exception as exc:
            # Busy tables (lock_timeout) or a database outage: try again soon.
            log.warning("partition maintenance failed, will retry", extra={"reason": describe(exc)})
            delay = min(60.0, settings.maintenance_interval_s)


async def serve(settings: SinkSettings) -> int:
    """Run the sink until SIGTERM/SIGINT; the process exit status."""
    tune_gc()
    stop = asyncio.Event()
    try:
        with process.on_signals(lambda sig: _on_signal(stop, sig)):
            await run_sink(settings, stop)
    except (SinkError, asyncpg.PostgresError, OSError) as exc:
        log.error("sink failed", extra={"reason": describe(exc)})
        return EXIT_FAILED
    return EXIT_OK


async def migrate_only(settings: SinkSettings) -> int:
    """Apply migrations, create partitions ahead and apply retention; the exit status."""
    try:
        report, maintenance = await run_migrations(settings)
    except (SinkError, asyncpg.PostgresError, OSError) as exc:
        log.error("migration failed", extra={"reason": describe(exc)})
        return EXIT_FAILED
    log.info(
        "migrations done",
        extra={"version": report.version, "applied": list(report.applied),
               "partitions_created": len(maintenance.created),
               "partitions_dropped": len(maintenance.dropped)},
    )  # fmt: skip
    return EXIT_OK


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("signal received, shutting down", extra={"signal": sig.name})
    stop.set()


def tune_gc() -> None:
    """Run the cyclic garbage collector less often than Python's default.

    Every record becomes a row that lives until its flush, so tens of thousands of young
    objects survive each default collection (700 allocations) and get scanned again and
    again; rows hold no cycles and are freed by reference counting (bench/REPORT.md has the
    CPU per record it saves). Objects from imports and setup are frozen out of collections
    altogether.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
