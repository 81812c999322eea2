"""What every fleetrun service process does at its edge: event loop, signals, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

EXIT_OK = 0
EXIT_CONFIG = 2


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when available: more pooled commands per second (bench/REPORT.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a service's main coroutine to completion on the fastest available loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


@contextlib.contextmanager
def on_signals(callback: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Call `callback(sig)` on SIGTERM/SIGINT inside the running loop, while the block runs."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
