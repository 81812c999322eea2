"""One request run with the execution ledger: the hooks the handler's fan-out runs through.

Hosts are marked `started` a window ahead (collector.window) and, when the partition is handed
over, those marked but never launched are released so the next owner runs them. A host whose
attempt was not marked ahead (a retry after a failed connect) is marked right before it
launches. Results go out with their `done` marks; attempts continue from an idempotent rerun's
base.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Generic

import msgspec

from collector.errors import CollectorError
from collector.fanout import H
from collector.ledger import Endpoint, Mark, Phase
from collector.outbox import HandedOver, Out
from collector.resume import Lane
from schemas import Result

log = logging.getLogger("fleetrun.collector.ledger")


@dataclass(slots=True)
class LedgeredRun(Generic[H]):
    """What `RequestHandler._run` does differently for a request with the ledger on."""

    request_id: str
    lane: Lane
    base: dict[Endpoint, int]  # idempotent reruns: attempt numbers continue from here
    observe_wait: Callable[[float], None]  # seconds a host waited for its `started` mark
    accepted_with: list[Out] = field(default_factory=list)  # the `running` entry, if new
    announce: bool = True  # publish `accepted` (not when resuming)
    targets_total: int = 0
    prior_statuses: list[str] = field(default_factory=list)  # hosts done by an earlier owner
    before: list[Result] = field(default_factory=list)  # outcome_unknown results to publish
    # Marked ahead and not launched yet: released if the partition is handed over.
    reserved: set[Endpoint] = field(default_factory=set)

    async def reserve(self, hosts: list[H]) -> None:
        """Commit `started` for the first attempt of `hosts`, in one write."""
        self._check()
        endpoints = [(h.name, h.port, h.user) for h in hosts]
        waiting = time.monotonic()
        await self._write("started", [self._mark(e, 1) for e in endpoints])
        self.observe_wait(time.monotonic() - waiting)
        self.reserved.update(endpoints)

    async def on_start(self, host: H, attempt: int) -> None:
        """Right before `host` launches: its mark is in, or is written now."""
        self._check()
        endpoint = (host.name, host.port, host.user)
        if attempt == 1 and endpoint in self.reserved:
            self.reserved.discard(endpoint)  # launching: the mark stays
            return
        self.reserved.discard(endpoint)
        waiting = time.monotonic()
        await self._write("started", [self._mark(endpoint, attempt)])
        self.observe_wait(time.monotonic() - waiting)

    def renumber(self, result: Result) -> Result:
        extra = self.base.get((result.host, result.port, result.user), 0)
        return msgspec.structs.replace(result, attempt=result.attempt + extra) if extra else result

    def publish(self, records: list[Out], result: Result) -> Coroutine[None, None, None]:
        """The result's records, committed with its `done` mark."""
        mark: Mark = (result.host, result.port, result.user, result.attempt, result.status)
        return self.lane.outbox.write(records, [(self.request_id, "done", mark)])

    async def release(self) -> None:
        """Handed over: hosts marked ahead that never launched go back to the next owner."""
        if not self.reserved:
            return
        marks = [self._mark(e, 1) for e in sorted(self.reserved)]
        try:
            await self._write("released", marks)
        except CollectorError as exc:
            # Not fatal: the next owner reports these hosts outcome_unknown instead of running
            # them, which never runs anything twice.
            log.warning(
                "marks of hosts not started could not be released",
                extra={"request_id": self.request_id, "hosts": len(marks), "error": str(exc)},
            )
        self.reserved.clear()

    def _check(self) -> None:
        if self.lane.handing_over:
            raise HandedOver("partition handed over before this host started")

    def _mark(self, endpoint: Endpoint, attempt: int) -> Mark:
        return (*endpoint, attempt + self.base.get(endpoint, 0), "")

    async def _write(self, phase: Phase, marks: list[Mark]) -> None:
        await self.lane.outbox.write((), [(self.request_id, phase, m) for m in marks])
