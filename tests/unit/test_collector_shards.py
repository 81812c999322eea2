"""Sharding's pure parts: sizes, slices, placement, the shard records, the results tally, the
drain in the cancel registry and in the fan-out's gate, and the ledger's shard count."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

import schemas
from collector.cancelled import CancelRegistry
from collector.confine import OVERRIDES
from collector.fanout import gate, plan_request
from collector.ledger import PartitionLedger
from collector.settings import CollectorSettings
from collector.shards import partition_of, shard_count, slices, split
from collector.tally import ResultTally
from schemas import Cancel
from tests.support.fakes import FakeInventory
from tests.support.records import make_request, make_result

NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("total", "size", "count"),
    [(1_000, 1_000, 0), (1_001, 1_000, 2), (20_000, 1_000, 20), (5, 0, 0), (3, 1, 3)],
)
def test_shard_count(total: int, size: int, count: int) -> None:
    assert shard_count(total, size) == count


@pytest.mark.parametrize(("total", "count"), [(1_001, 2), (10, 3), (20_000, 20), (7, 7)])
def test_slices_cover_everything_once_and_differ_by_one_at_most(total: int, count: int) -> None:
    parts = slices(total, count)
    assert [i for part in parts for i in part] == list(range(total))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shards_go_round_robin_over_the_partitions() -> None:
    assert [partition_of(i, [3, 1, 0, 2]) for i in range(6)] == [0, 1, 2, 3, 0, 1]


def test_split_makes_valid_shards_that_plan_back_to_the_same_hosts() -> None:
    request = make_request(targets=("web[1-25]", "deploy@db1:2222", "!web7"), max_errors="10%")
    plan = plan_request(request, FakeInventory(), allow_targets=OVERRIDES)
    shards = split(request, schemas.encode(request).decode(), plan, 10, collector="c0", now=NOW)
    assert [(s.index, s.count, len(s.targets)) for s in shards] == [(0, 3, 9), (1, 3, 8), (2, 3, 8)]
    assert {s.targets_total for s in shards} == {plan.total}
    replanned = []
    for shard in shards:
        decoded = schemas.decode_shard(schemas.encode(shard))  # the contract takes it
        assert decoded.shard_id == f"{request.request_id}:{shard.index}"
        assert schemas.decode_request(decoded.request) == request
        narrowed = msgspec.structs.replace(request, targets=decoded.targets)
        again = plan_request(narrowed, FakeInventory(), allow_targets=OVERRIDES)
        replanned += [p.host for p in again.hosts]
    assert replanned == [p.host for p in plan.hosts]


def _tally(hosts: list[str]) -> ResultTally:
    endpoints = [(h, 22, "deploy") for h in hosts]
    return ResultTally(CollectorSettings(), "t.results", [0], "rid", endpoints)


def test_the_tally_counts_each_planned_host_once_and_its_errors() -> None:
    tally = _tally(["web1", "web2", "web3"])

    def value(host: str, status: schemas.ResultStatus) -> bytes:
        return schemas.encode(make_result(host=host, status=status, user="deploy"))

    assert tally.take(value("web1", "ok")) == 1
    assert tally.take(value("web2", "failed")) == 1
    assert tally.take(value("web2", "failed")) == 0  # a redelivery changes nothing
    assert tally.take(value("other", "failed")) == 0  # not in the plan
    assert tally.take(b"not json") == 0
    assert (tally.errors, tally.stray, tally.complete) == (1, 1, False)
    assert tally.take(value("web3", "timeout")) == 1
    assert (tally.errors, tally.complete) == (2, True)


def test_a_drain_is_kept_apart_from_cancels() -> None:
    registry = CancelRegistry(ttl_s=60, max_entries=10)
    drain = Cancel.new("0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10", principal="collector c0")
    drain = msgspec.structs.replace(drain, drain=True)
    assert registry.add(drain)
    assert registry.drained(drain.request_id) == drain
    assert registry.cancelled(drain.request_id) is None  # not a cancel: nothing is killed
    real = Cancel.new(drain.request_id, principal="carol")
    assert registry.add(real)  # a cancel after a drain still counts
    assert registry.cancelled(drain.request_id) == real


@pytest.mark.parametrize(("spent", "errors", "decision"), [(True, 0, "skipped"), (False, 0, "run")])
def test_a_budget_spent_elsewhere_skips_the_host(spent: bool, errors: int, decision: str) -> None:
    assert gate(now=NOW, expires_at=None, errors=errors, budget=5, spent=spent) == decision


def test_the_ledger_remembers_how_many_shards_a_request_has() -> None:
    ledger = PartitionLedger(0, collector="c0")
    entry = ledger.begin("rid", "digest", NOW, shards=12)
    assert entry is not None
    replayed = PartitionLedger(0, collector="c1")
    replayed.apply(*entry)
    prior = replayed.prior("rid")
    assert prior is not None
    assert prior.shards == 12
    assert replayed.admit("rid", "digest") == "resume"
