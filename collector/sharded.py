"""A request too big for one collector: split it into shards, then report it as one request.

The collector that receives a request with more hosts than `shard_size` (and the ledger on)
becomes its coordinator. In one transaction of the request's partition it writes the
`accepted` status, the request's `running` ledger entry (saying how many shards) and the shard
records (collector.shards) to the shards topic, which every collector of the group consumes
(collector.shardrun). Then it runs no host itself: it reads the request's results back as the
shards commit them (collector.tally) until every host has its one result, and publishes the one
`completed` status, with the counts of those results, and the ledger's `completed` entry.

- **Error budget across shards.** Each shard applies the request's budget to its own errors;
  the coordinator counts the errors of all shards and, once they pass the budget, sends a drain
  (fleetrun.cancel/1 with `drain: true`) that every collector reads: each shard skips its hosts
  not started yet, running commands finish. The overshoot is what runs meanwhile; the bound is
  in docs/DESIGN.md ("Shards").
- **Cancel** needs nothing here: every collector reads the cancels, so every shard stops; the
  `completed` status carries who cancelled.
- **Crashes.** The coordinator's state is the ledger entry and the results topic: a new owner of
  the request's partition finds the entry `running` with its shard count, reads the results back
  from the entry's time, and carries on waiting. A shard's collector dying is the shards'
  ledger's business (collector.shardrun), with the same at-most-once rules as a request's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, Generic

import schemas
from collector.fanout import H, Plan, host_identity
from collector.kafka import Publisher, Topics
from collector.ledger import Prior
from collector.metrics import CollectorMetrics
from collector.outbox import HandedOver, Out
from collector.resume import Lane
from collector.settings import CollectorSettings
from collector.shards import partition_of, shard_count, split
from collector.tally import ResultTally
from schemas import Cancel, ConsumedRecord, Request, Status, StatusCounts

log = logging.getLogger("fleetrun.collector.shards")

_POLL_MS: Final = 200
_PROGRESS_EVERY_S: Final = 30.0
# Reading results back after a coordinator change starts this long before the request's
# `running` entry: the clocks of two collectors may disagree a little.
_CLOCK_SLACK: Final = timedelta(minutes=5)


_Lookup = Callable[[str], Cancel | None]  # the cancel of a request, if any


class ShardCoordinator(Generic[H]):
    """Splits big requests into shards and reports each one as one request."""

    def __init__(
        self,
        settings: CollectorSettings,
        topics: Topics,
        *,
        publisher: Publisher,
        metrics: CollectorMetrics,
        default_user: str,
        cancelled: _Lookup,
        shard_partitions: list[int],
        result_partitions: list[int],
    ) -> None:
        self.settings = settings
        self.size = settings.shard_size
        self.topics = topics
        self.collector = settings.name
        self.publisher = publisher
        self.metrics = metrics
        self.default_user = default_user
        self.cancelled = cancelled
        self.shard_partitions = shard_partitions
        self.result_partitions = result_partitions
        self.waiting = 0  # coordinators waiting for shards (they hold no SSH session)

    def applies(self, plan: Plan[H], prior: Prior | None) -> bool:
        """Sharded: a resumed request as it was first decided, a new one by its size."""
        if prior is not None:
            return prior.shards > 0
        return shard_count(plan.total, self.size) > 0

    async def run(
        self,
        record: ConsumedRecord,
        request: Request,
        plan: Plan[H],
        lane: Lane,
        content: str,
        prior: Prior | None,
    ) -> None:
        rid = request.request_id
        key = rid.encode()
        now = datetime.now(UTC)
        hosts = [host_identity(p, self.default_user) for p in plan.hosts]
        tally = ResultTally(self.settings, self.topics.results, self.result_partitions, rid, hosts)
        self.waiting += 1
        self.metrics.sharded_waiting.inc()
        try:
            if prior is None:
                shards = split(
                    request,
                    bytes(record.value or b"").decode(),
                    plan,
                    self.size,
                    collector=self.collector,
                    now=now,
                )
                lane.ledger.running_here.add(rid)
                entry = lane.ledger.begin(rid, content, now, shards=len(shards))
                # Results can only follow the shards, which follow this point: read from here.
                await tally.start(None)
                accepted = Status.accepted(
                    request, targets_total=plan.total, collector=self.collector
                )
                records = [
                    Out(self.topics.status, key, schemas.encode(accepted)),
                    *([lane.entry(entry)] if entry is not None else []),
                    *(
                        Out(
                            self.topics.shards,
                            shard.shard_id.encode(),
                            schemas.encode(shard),
                            partition_of(shard.index, self.shard_partitions),
                        )
                        for shard in shards
                    ),
                ]
                await lane.outbox.write(records)
                self.metrics.shards.labels("split").inc(len(shards))
                began = now
                log.info(
                    "request accepted and split into shards",
                    extra={
                        "request_id": rid,
                        "targets_total": plan.total,
                        "shards": len(shards),
                        "shard_size": self.size,
                        "command": request.command,
                    },
                )
            else:
                lane.ledger.running_here.add(rid)
                lane.ledger.begin(rid, content, now)
                began = prior.at or now
                await tally.start(int((began - _CLOCK_SLACK).timestamp() * 1000))
                log.info(
                    "resuming a sharded request: reading its results back",
                    extra={"request_id": rid, "shards": prior.shards},
                )
            await self._wait(request, plan, lane, tally)
        except BaseException:
            lane.ledger.forget_running(rid)
            raise
        finally:
            self.waiting -= 1
            self.metrics.sharded_waiting.dec()
            await tally.stop()
        await self._complete(request, lane, tally, began)

    async def _wait(self, request: Request, plan: Plan[H], lane: Lane, tally: ResultTally) -> None:
        rid = request.request_id
        drained = False
        last_progress = time.monotonic()
        while not tally.complete:
            if lane.handing_over:
                raise HandedOver(f"request {rid}: the next owner of its partition waits for it")
            await tally.poll(_POLL_MS)
            if not drained and plan.budget is not None and tally.errors > plan.budget:
                drained = True
                await self._drain(rid, tally.errors, plan.budget)
            if time.monotonic() - last_progress >= _PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                log.info(
                    "sharded request running",
                    extra={
                        "request_id": rid,
                        "done": len(tally.statuses),
                        "targets_total": plan.total,
                        "errors": tally.errors,
                    },
                )

    async def _drain(self, rid: str, errors: int, budget: int) -> None:
        """Every shard skips its hosts not started: the budget is spent across the shards."""
        reason = f"error budget spent across shards: {errors} errors, budget {budget}"
        drain = Cancel(
            request_id=rid,
            principal=f"fleetrun collector {self.collector}",
            reason=reason,
            submitted_at=schemas.now_timestamp(),
            drain=True,
        )
        await self.publisher.publish(self.topics.cancels, rid.encode(), schemas.encode(drain))
        log.info("sharded request drained", extra={"request_id": rid, "errors": errors})

    async def _complete(
        self, request: Request, lane: Lane, tally: ResultTally, began: datetime
    ) -> None:
        rid = request.request_id
        now = datetime.now(UTC)
        counts = StatusCounts.of(list(tally.statuses.values()))
        duration_ms = max(0, int((now - began).total_seconds() * 1000))
        cancel = self.cancelled(rid)
        completed = Status.completed(
            rid, counts, duration_ms=duration_ms, collector=self.collector, cancel=cancel
        )
        closing = [lane.entry(item) for item in lane.ledger.finish(rid, now)]
        await lane.outbox.write(
            [Out(self.topics.status, rid.encode(), schemas.encode(completed)), *closing]
        )
        log.info(
            "sharded request completed",
            extra={"request_id": rid, "duration_ms": duration_ms}
            | {k: v for k, v in counts.as_dict().items() if v},
        )
