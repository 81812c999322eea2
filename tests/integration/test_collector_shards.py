"""Sharded requests on the real stack: three collector processes share one big request.

A simulated fleet counts every execution per host (`sim:mark TAG`), so "no host ran twice" is
counted where the commands run, not inferred from the results.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from schemas import Request, Result, Status, StatusCounts
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
