"""The sink: batch results from Kafka into PostgreSQL, idempotently, committing after the DB.

Entry points for the CLI (imported lazily, so the pure modules stay light):
    sink.main(argv) -> int                      `python -m sink`, `fleetrun sink`
    await sink.run_sink(settings, stop)         run until `stop` is set
    await sink.run_migrations(settings)         `fleetrun migrate`
Settings: sink.settings.SinkSettings, loaded with fleetrun.settings.load(..., section="sink").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sink.metrics import SinkMetrics
    from sink.migrate import MigrationReport
    from sink.partitions import MaintenanceReport
    from sink.settings import SinkSettings


def main(argv: list[str] | None = None) -> int:
    """Run `python -m sink` with `argv`; returns the exit status."""
    from sink.app import main as _main

    return _main(argv)


async def run_sink(
    settings: SinkSettings, stop: asyncio.Event | None = None, *, metrics: SinkMetrics | None = None
) -> None:
    """Run the sink until `stop` is set."""
    from sink.app import run_sink as _run_sink

    await _run_sink(settings, stop, metrics=metrics)


async def run_migrations(settings: SinkSettings) -> tuple[MigrationReport, MaintenanceReport]:
    """Apply pending migrations, create partitions ahead and apply retention."""
    from sink.app import run_migrations as _run_migrations

    return await _run_migrations(settings)


__all__ = ["main", "run_migrations", "run_sink"]
