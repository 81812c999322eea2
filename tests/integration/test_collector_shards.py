"""Sharded requests on the real stack: three collector processes share one big request.

A simulated fleet counts every execution per host (`sim:mark TAG`), so "no host ran twice" is
counted where the commands run, not inferred from the results.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

import schemas
from schemas import Cancel, Request, Result, Status, StatusCounts
from stack.simfleet.runner import RunningFleet, running_fleet
from tests.support.collector import Seen, finished, read_until, submit
from tests.support.kafka import Topics
from tests.support.shards import collector_group, owner_of

COLLECTORS = 3


def _tag() -> str:
    return "s" + uuid.uuid4().hex[:12]


def _request(command: str, **options: Any) -> Request:
    return Request.new(principal="tests", command=command, targets=["@all"], **options)


async def _marks(fleet: RunningFleet, tag: str) -> dict[str, int]:
    stats = await fleet.stats(timeout_s=10)
    marks: dict[str, int] = stats.get("marks", {}).get(tag, {})
    return marks


def _counts(status: Status) -> StatusCounts:
    assert isinstance(status.counts, StatusCounts), status
    return status.counts


def _one_request(seen: Seen, request: Request, hosts: int) -> tuple[list[Result], Status]:
    """One accepted, one completed adding up to `hosts`, one result per host."""
    results, statuses = seen.for_request(request.request_id)
    assert [s.state for s in statuses] == ["accepted", "completed"], statuses
    accepted, completed = statuses
    assert accepted.targets_total == completed.targets_total == hosts
    assert _counts(completed).total == hosts
    per_host = Counter(r.host for r in results)
    assert len(per_host) == hosts, len(per_host)
    assert set(per_host.values()) == {1}, per_host.most_common(3)
    assert Counter(r.status for r in results) == Counter(
        {k: v for k, v in _counts(completed).as_dict().items() if v}
    )
    return results, completed


async def test_one_request_is_shared_by_three_collectors(topics: Topics, tmp_path: Path) -> None:
    hosts, tag = 240, _tag()
    async with running_fleet(hosts, tmp_path / "fleet", base_address="127.61.0.1") as fleet:
        async with collector_group(
            topics.prefix, tmp_path, fleet, COLLECTORS, shard_size=20
        ) as subs:
            request = _request(f"sim:mark {tag} then 0.2", concurrency=10)
            await submit(topics.bootstrap, topics["requests"], [request], partition=0)
            seen = await read_until(
                topics.bootstrap,
                topics.prefix,
                finished(request.request_id),
                timeout_s=120,
                settle_s=1.0,
            )
            coordinator = await owner_of(subs, 0)
        marks = await _marks(fleet, tag)
    results, completed = _one_request(seen, request, hosts)
    assert _counts(completed).ok == hosts
    assert completed.collector == coordinator.log.stem  # the one that split it reports it
    by_collector = Counter(r.collector for r in results)
    # Twelve shards of 20 over six partitions, two per collector: each ran a third.
    assert sorted(by_collector) == [f"c{i}" for i in range(COLLECTORS)], by_collector
    assert set(by_collector.values()) == {hosts // COLLECTORS}, by_collector
    assert len(marks) == hosts
    assert set(marks.values()) == {1}


def _failed_hosts(results: list[Result]) -> int:
    return sum(1 for r in results if r.status == "failed")


async def test_the_error_budget_holds_across_shards(topics: Topics, tmp_path: Path) -> None:
    # Every host fails. Twelve shards run at once, each at concurrency 2; each applies the
    # request's budget (10) to its own errors, which alone would let ~12 × 11 hosts fail. The
    # coordinator drains every shard once their errors together pass 10: what still fails is
    # what was running, or started before the drain reached each shard (docs/DESIGN.md,
    # "Shards": L ≈ 2 s here at most, commands of 1 s).
    hosts, shards, concurrency, budget, tag = 480, 12, 2, 10, _tag()
    bound = budget + 1 + shards * concurrency * (1 + 2)
    async with running_fleet(hosts, tmp_path / "fleet", base_address="127.62.0.1") as fleet:
        async with collector_group(
            topics.prefix, tmp_path, fleet, COLLECTORS, shard_size=hosts // shards
        ):
            request = _request(
                f"sim:mark {tag} then 1 exit 3", concurrency=concurrency, max_errors=budget
            )
            await submit(topics.bootstrap, topics["requests"], [request])
            seen = await read_until(
                topics.bootstrap,
                topics.prefix,
                finished(request.request_id),
                timeout_s=120,
                settle_s=1.0,
            )
        marks = await _marks(fleet, tag)
    results, completed = _one_request(seen, request, hosts)
    counts = _counts(completed)
    assert counts.failed + counts.skipped == hosts, counts
    assert budget < counts.failed <= bound, counts
    assert completed.cancelled_by is msgspec.UNSET  # a drain is not a cancel
    assert sum(marks.values()) == counts.failed == _failed_hosts(results)
    assert set(marks.values()) == {1}


async def test_a_cancel_reaches_every_shard(topics: Topics, tmp_path: Path) -> None:
    hosts, tag = 240, _tag()
    async with running_fleet(hosts, tmp_path / "fleet", base_address="127.63.0.1") as fleet:
        async with collector_group(topics.prefix, tmp_path, fleet, COLLECTORS, shard_size=20):
            request = _request(f"sim:mark {tag} then 1", concurrency=2)
            await submit(topics.bootstrap, topics["requests"], [request])
            rid = request.request_id
            # Shards are running on every collector before the cancel goes out.
            await read_until(
                topics.bootstrap,
                topics.prefix,
                lambda seen: len({r.collector for r in seen.for_request(rid)[0]}) == COLLECTORS,
                timeout_s=60,
            )
            cancel = Cancel.new(rid, principal="carol", reason="wrong fleet")
            await submit(
                topics.bootstrap, topics["cancels"], [schemas.encode(cancel)], key=rid.encode()
            )
            seen = await read_until(
                topics.bootstrap, topics.prefix, finished(rid), timeout_s=60, settle_s=1.0
            )
        marks = await _marks(fleet, tag)
    results, completed = _one_request(seen, request, hosts)
    counts = _counts(completed)
    assert completed.cancelled_by == "carol"
    assert completed.cancel_reason == "wrong fleet"
    # Twelve shards of 20 at concurrency 2 (10 s each): most hosts never started, on every
    # collector; the cancelled ones say so.
    assert counts.skipped > hosts // 2, counts
    skipped = [r for r in results if r.status == "skipped"]
    assert {r.collector for r in skipped} == {f"c{i}" for i in range(COLLECTORS)}
    assert all(r.error is not None and "carol" in r.error.message for r in skipped)
    ran = {r.host for r in results if r.status != "skipped"}
    assert set(marks) == ran
    assert set(marks.values()) == {1}


@pytest.mark.parametrize("victim", ["coordinator", "other"])
async def test_a_collector_killed_mid_shard_hands_over_and_no_host_runs_twice(
    topics: Topics, tmp_path: Path, victim: str
) -> None:
    # SIGKILL a collector while its shards run (the coordinator runs shards too). The group
    # gives its partitions to the others, which replay the ledgers: hosts done are not run
    # again, hosts started and not reported get outcome_unknown, the rest run; the coordinator's
    # successor reads the results back and completes the request.
    hosts, tag = 360, _tag()
    async with running_fleet(hosts, tmp_path / "fleet", base_address="127.64.0.1") as fleet:
        async with collector_group(
            topics.prefix, tmp_path, fleet, COLLECTORS, shard_size=30
        ) as subs:
            request = _request(f"sim:mark {tag} then 1", concurrency=3)
            rid = request.request_id
            await submit(topics.bootstrap, topics["requests"], [request], partition=0)
            coordinator = await owner_of(subs, 0)
            target = (
                coordinator
                if victim == "coordinator"
                else next(s for s in subs if s is not coordinator)
            )
            name = target.log.stem
            await read_until(
                topics.bootstrap,
                topics.prefix,
                lambda seen: sum(r.collector == name for r in seen.for_request(rid)[0]) >= 6,
                timeout_s=60,
            )
            target.proc.send_signal(signal.SIGKILL)
            await target.proc.wait()
            seen = await read_until(
                topics.bootstrap, topics.prefix, finished(rid), timeout_s=150, settle_s=1.0
            )
        marks = await _marks(fleet, tag)
    results, completed = _one_request(seen, request, hosts)
    if victim == "coordinator":
        assert completed.collector != name  # its successor reported the request
    unknown = {r.host for r in results if r.error is not None and r.error.type == "outcome_unknown"}
    ok = {r.host for r in results if r.status == "ok"}
    assert unknown, "the victim had hosts running: they must be reported, not run again"
    assert ok | unknown == {r.host for r in results}
    assert set(marks.values()) == {1}  # no host ran twice
    assert ok <= set(marks)  # every ok host ran, once
    assert len(marks) <= hosts
