"""Running one shard of a big request: a record of the shards topic, start to finish.

A shard is run like a request (collector.handler), with the shards' own ledger (topic
`<prefix>shard-ledger`, co-partitioned with the shards topic, keyed by the shard id
`<request_id>:<index>`) and the shards partition's transactional outbox: its hosts start at
most once whatever crashes, and a shard left unfinished is resumed by the next owner of its
partition exactly as a request is (docs/DESIGN.md, "Shards"). It publishes the request's
results under the request's request_id and no status: the coordinator (collector.sharded)
reports the request. A shard record that cannot be read goes to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Generic

import msgspec

import schemas
from collector.deadletters import publish_dead_letter
from collector.errors import CollectorError
from collector.fanout import H, plan_request
from collector.handler import Disposition, RequestHandler
from collector.kafka import Topics
from collector.ledger import digest
from collector.metrics import CollectorMetrics
from collector.resume import Lane
from schemas import ConsumedRecord, ErrorInfo, SchemaError

log = logging.getLogger("fleetrun.collector.shards")


class ShardRunner(Generic[H]):
    """Runs shard records through the request handler's ledgered fan-out."""

    def __init__(self, handler: RequestHandler[H], topics: Topics, metrics: CollectorMetrics):
        self.handler = handler
        self.topics = topics
        self.metrics = metrics

    async def handle(self, record: ConsumedRecord, lane: Lane) -> Disposition:
        """Run one shard; returns once its results and ledger entries are committed."""
        outcome = await self._handle(record, lane)
        self.metrics.shards.labels(outcome).inc()
        return outcome

    async def _handle(self, record: ConsumedRecord, lane: Lane) -> Disposition:
        try:
            shard = schemas.decode_shard(record.value)
            request = schemas.decode_request(shard.request)
        except SchemaError as exc:
            return await self._refuse(record, lane, exc, schemas.peek_request_id(record.value))
        sid = shard.shard_id
        content = digest(record.value)
        admission = lane.ledger.admit(sid, content)
        if admission == "duplicate":
            return "duplicate"
        if admission == "reused":
            problem = ValueError(f"shard {sid} already names another shard (other content)")
            return await self._refuse(record, lane, problem, shard.request_id)
        prior = lane.ledger.prior(sid) if admission == "resume" else None
        try:
            narrowed = msgspec.structs.replace(request, targets=shard.targets)
            # The coordinator's admission allowed these targets; planned as it planned them.
            plan = plan_request(
                narrowed, self.handler.inventory, allow_targets=self.handler.planning_overrides()
            )
            # The budget is the whole request's: each shard alone stays within it, and the
            # coordinator drains every shard once their errors together pass it.
            plan = dataclasses.replace(plan, budget=request.error_budget(shard.targets_total))
            log.info(
                "shard taken",
                extra={"request_id": shard.request_id, "shard": sid, "hosts": plan.total}
                | ({"resumed": True} if prior is not None else {}),
            )
            await self.handler.run_shard(sid, request, plan, lane, content, prior)
        except (asyncio.CancelledError, CollectorError):
            raise  # shutdown, revocation, Kafka refusing records: the offset stays open
        except Exception as exc:
            log.exception("shard failed inside the collector", extra={"shard": sid})
            lane.ledger.forget_running(sid)
            return await self._refuse(record, lane, exc, shard.request_id)
        return "completed"

    async def _refuse(
        self, record: ConsumedRecord, lane: Lane, exc: Exception, request_id: str | None
    ) -> Disposition:
        # Its hosts get no result from this shard: the coordinator goes on waiting, and says so
        # in its progress lines; the record is in the DLQ with the reason.
        log.error("shard refused", extra={"request_id": request_id or "", "error": str(exc)})
        await publish_dead_letter(
            lane.outbox,
            self.topics.dlq,
            record,
            ErrorInfo.from_exception(exc),
            instance=self.handler.collector,
            request_id=request_id,
        )
        self.metrics.dead_letters.inc()
        return "dead_lettered"
