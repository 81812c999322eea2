"""ShardRunner on the fakes: a shard runs its hosts under the request's id and the shard's ledger
key, publishes no status, runs once; a shard record it cannot read is dead-lettered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import schemas
from collector.confine import OVERRIDES
from collector.fanout import plan_request
from collector.ledger import PartitionLedger
from collector.metrics import CollectorMetrics
from collector.outbox import MarkItem, Out, Outbox
from collector.resume import Lane
from collector.shardrun import ShardRunner
from collector.shards import split
from tests.support.fakes import (
    FakeExecutor,
    FakeHost,
    FakeInventory,
    FakePublisher,
    FakeRecord,
    fake_handler,
)
from tests.support.records import make_request


class CommittingOutbox(Outbox):
    """Commits every write at once and keeps its records; marks go through the lane."""

    def __init__(self) -> None:  # no producer: nothing here reaches Kafka
        self.records: list[Out] = []
        self.lane: Lane | None = None

    async def write(self, records: Sequence[Out], marks: Sequence[MarkItem] = ()) -> None:
        assert self.lane is not None
        self.records.extend(records)
        for request_id, phase, mark in marks:
            self.records.append(self.lane.encode_marks(request_id, phase, [mark]))


def _lane() -> tuple[Lane, CommittingOutbox]:
    outbox = CommittingOutbox()
    lane = Lane(outbox, PartitionLedger(0, collector="c1"), "t.shard-ledger")
    outbox.lane = lane
    return lane, outbox


def _shard_record(index: int = 1) -> tuple[FakeRecord, schemas.Shard]:
    request = make_request(targets=("web[1-12]",), concurrency=2)
    plan = plan_request(request, FakeInventory(), allow_targets=OVERRIDES)
    now = datetime.now(UTC)
    shard = split(request, schemas.encode(request).decode(), plan, 4, collector="c0", now=now)[
        index
    ]
    value = schemas.encode(shard)
    return FakeRecord(value, key=shard.shard_id.encode(), topic="t.shards"), shard


def _runner(executor: FakeExecutor) -> ShardRunner[FakeHost]:
    handler = fake_handler(FakePublisher(), executor, allow_targets=OVERRIDES)  # web5…web12
    return ShardRunner(handler, handler.topics, CollectorMetrics())


async def test_a_shard_runs_its_hosts_under_the_request_id_and_publishes_no_status() -> None:
    executor = FakeExecutor()
    runner = _runner(executor)
    lane, outbox = _lane()
    record, shard = _shard_record()
    assert await runner.handle(record, lane) == "completed"
    assert sorted(executor.started) == ["web5", "web6", "web7", "web8"]
    topics = {out.topic for out in outbox.records}
    assert "t.status" not in topics  # the coordinator reports the request
    results = [schemas.decode_result(o.value) for o in outbox.records if o.topic == "t.results"]
    assert {r.request_id for r in results} == {shard.request_id}
    assert {o.key for o in outbox.records if o.topic == "t.results"} == {shard.request_id.encode()}
    ledger_keys = {o.key.decode() for o in outbox.records if o.topic == "t.shard-ledger" and o.key}
    assert shard.shard_id in ledger_keys  # the shard's own entry, then `completed`
    prior = lane.ledger.prior(shard.shard_id)
    assert prior is not None
    assert prior.completed
    # The same record again (a redelivery) runs nothing.
    assert await runner.handle(record, lane) == "duplicate"
    assert len(executor.started) == 4
    registry = runner.metrics.registry
    for outcome in ("completed", "duplicate"):
        sample = registry.get_sample_value("fleetrun_collector_shards_total", {"outcome": outcome})
        assert sample == 1


async def test_a_shard_record_that_cannot_be_read_is_dead_lettered() -> None:
    executor = FakeExecutor()
    runner = _runner(executor)
    lane, outbox = _lane()
    record = FakeRecord(b'{"schema": "fleetrun.shard/1", "index": 3}', topic="t.shards")
    assert await runner.handle(record, lane) == "dead_lettered"
    assert [o.topic for o in outbox.records] == ["t.dlq"]
    letter = schemas.decode_dead_letter(outbox.records[0].value)
    assert "request_id" in letter.error.message
    assert not executor.started
