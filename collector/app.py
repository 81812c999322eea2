"""`python -m collector [--show-config]`: settings, logs, ops endpoint, signals, the service."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from collector.metrics import CollectorMetrics
from collector.settings import CollectorSettings
from fleetrun import logs
from fleetrun.ops import OpsServer
from fleetrun.settings import SettingsError, load_with_sources, render

log = logging.getLogger("fleetrun.collector")

EXIT_OK = 0
EXIT_FAILED = 1  # Kafka unreachable at start, or records refused for good while running
EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the collector until SIGTERM/SIGINT; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m collector",
        description="Consume command requests from Kafka, run them over SSH, publish results.",
    )
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print the settings (secrets masked) with where each value came from, and exit",
    )
    args = parser.parse_args(argv)
    try:
        settings, sources = load_with_sources(CollectorSettings, section="collector")
    except SettingsError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.show_config:
        print(render(settings, sources))
        return EXIT_OK
    logs.setup(settings.log_level, settings.log_format)
    return _run_loop(serve(settings))


def _run_loop(main_coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop  # ~8% more pooled commands per second on this kind of box (DESIGN.md)
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(main_coro)
    result: int = uvloop.run(main_coro)
    return result


async def serve(settings: CollectorSettings, *, metrics: CollectorMetrics | None = None) -> int:
    """Build the collector from settings and run it until a signal; the exit status."""
    from collector.inventory import Inventory, InventoryError
    from collector.service import Collector
    from collector.ssh import SshExecutor

    metrics = metrics or CollectorMetrics()
    try:
        inventory = Inventory.load(settings.inventory, settings)
    except (InventoryError, OSError) as exc:
        log.error(
            "inventory not usable", extra={"path": str(settings.inventory), "error": str(exc)}
        )
        return EXIT_CONFIG
    executor = SshExecutor(settings, metrics, inventory)
    collector = Collector(settings, executor=executor, inventory=inventory, metrics=metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, collector.stop)
    ops = OpsServer(metrics.registry, collector.health, settings.ops_host, settings.ops_port)
    try:
        await ops.start()
    except OSError as exc:
        log.error(
            "ops endpoint cannot listen", extra={"port": settings.ops_port, "error": str(exc)}
        )
        await executor.close()
        return EXIT_CONFIG
    try:
        summary = await collector.run()
    except Exception as exc:
        log.error("collector failed", extra={"error": str(exc)})
        return EXIT_FAILED
    finally:
        await ops.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return EXIT_FAILED if summary.fatal else EXIT_OK
