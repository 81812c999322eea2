"""The collector as a process: build it from its settings, serve until a signal, stop in order.

`fleetrun collector` (fleetrun/cli) loads the settings and logging at the edge, then runs
serve().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from collector.metrics import CollectorMetrics
from collector.settings import CollectorSettings
from fleetrun.runtime import outage, process
from fleetrun.runtime.kafkaauth import client_options
from fleetrun.runtime.ops import OpsServer, all_healthy
from fleetrun.runtime.probes import KafkaProbe
from fleetrun.runtime.process import EXIT_CONFIG, EXIT_OK

if TYPE_CHECKING:
    from collector.service import Collector
    from collector.ssh import SshExecutor

log = logging.getLogger("fleetrun.collector")

EXIT_FAILED = 1  # Kafka unreachable at start, or records refused for good while running
_PROBE_TIMEOUT_S = 2.0
__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "serve"]


async def serve(settings: CollectorSettings, *, metrics: CollectorMetrics | None = None) -> int:
    """Build the collector from settings and run it until a signal; the exit status."""
    from collector.admission import Admission
    from collector.inventory import Inventory, InventoryError
    from collector.service import Collector
    from collector.ssh import SshExecutor

    metrics = metrics or CollectorMetrics()
    try:
        inventory = Inventory.load(settings.inventory, settings)
        inventory.listing  # noqa: B018 - built now, not by the first request (collector.confine)
    except (InventoryError, OSError) as exc:
        log.error(
            "inventory not usable", extra={"path": str(settings.inventory), "error": str(exc)}
        )
        return EXIT_CONFIG
    if settings.allow_targets:
        log.warning(
            "targets may leave the inventory",
            extra={"allow_targets": ",".join(settings.allow_targets)},
        )
    try:
        admission = Admission.from_settings(settings, inventory.groups)
    except (ValueError, OSError) as exc:  # PolicyError, SignersFileError: say what to fix
        log.error("policy or allowed signers not usable", extra={"error": str(exc)})
        return EXIT_CONFIG
    executor = SshExecutor(settings, metrics, inventory)
    collector = Collector(
        settings, executor=executor, inventory=inventory, metrics=metrics, admission=admission
    )
    with process.on_signals(lambda _sig: collector.stop()):
        return await _serve(settings, collector, executor, metrics)


async def _serve(
    settings: CollectorSettings,
    collector: Collector[Any],
    executor: SshExecutor,
    metrics: CollectorMetrics,
) -> int:
    outages = outage.tracker()
    outages.set_context(lambda: {"inflight_requests": collector.health()[1]["inflight_requests"]})
    health = all_healthy(collector.health, lambda: outages.health(["kafka"]))
    ops = OpsServer(metrics.registry, health, settings.ops_host, settings.ops_port)
    try:
        await ops.start()
    except OSError as exc:
        log.error(
            "ops endpoint cannot listen", extra={"port": settings.ops_port, "error": str(exc)}
        )
        await executor.close()
        return EXIT_CONFIG
    # /healthz must see Kafka go away also while the collector is idle (nothing to publish).
    probe = KafkaProbe(
        client_options(settings), f"fleetrun-collector-{settings.name}-probe", _PROBE_TIMEOUT_S
    )
    watching = asyncio.create_task(
        outage.watch(outages, "kafka", probe, timeout_s=_PROBE_TIMEOUT_S), name="kafka probe"
    )
    try:
        summary = await collector.run()
    except Exception as exc:
        log.error("collector failed", extra={"error": str(exc)})
        return EXIT_FAILED
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await probe.close()
        await ops.stop()
    return EXIT_FAILED if summary.fatal else EXIT_OK
