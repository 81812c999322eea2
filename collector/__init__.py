"""The collector: consume command requests, run them over SSH on many hosts, publish results."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the collector until SIGTERM/SIGINT (`fleetrun collector`, `python -m collector`)."""
    from collector.app import main as run  # imported late: `import collector.x` stays light

    return run(argv)
