"""Stop: how a caller asks running commands to stop on purpose, and says why.

One Stop may serve every host of a request. `stop.set("request cancelled by alice")` makes
each command that runs under it end as collector.command stops a timed-out one (the process
group gets TERM, then KILL), and its host's Result say so: status `error`, error.type
`killed`, the message "killed: <reason>; <what was done>", exit_signal when the server told.
A host whose command had not been launched yet gets `skipped` (error.type `not_started`)
instead, and nothing is launched. The executor then returns normally: no cancellation, so the
caller gets a final Result for every host it stopped.

No asyncio task per command: a running command attaches an Event that `set` sets.
"""

from __future__ import annotations

import asyncio
import contextlib


class Stop:
    """A request to stop commands, with the reason their results report (the first one wins)."""

    __slots__ = ("_events", "_reason")

    def __init__(self) -> None:
        self._reason: str | None = None
        self._events: set[asyncio.Event] = set()

    @property
    def reason(self) -> str | None:
        """Why the commands are stopped; None until `set`."""
        return self._reason

    def is_set(self) -> bool:
        """Whether `set` was called."""
        return self._reason is not None

    def set(self, reason: str) -> None:
        """Stop every command running under this Stop now, and every later one before it starts."""
        if self._reason is None:
            self._reason = reason.strip() or "stopped"
        for event in self._events:
            event.set()

    def attach(self, event: asyncio.Event) -> None:
        """Set `event` when this Stop is set (at once if it already is)."""
        self._events.add(event)
        if self._reason is not None:
            event.set()

    def detach(self, event: asyncio.Event) -> None:
        """Forget `event` (its command ended)."""
        self._events.discard(event)

    async def sleep(self, seconds: float) -> bool:
        """Sleep `seconds`, or less if this Stop is set meanwhile; whether it is set."""
        event = asyncio.Event()
        self.attach(event)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await event.wait()
        finally:
            self.detach(event)
        return self.is_set()
