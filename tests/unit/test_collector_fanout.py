"""Fan-out: planning, the per-host gate (expiry, error budget) and the sliding-window runner.

The executor here is a fake (pure logic under test); the real SSH executor is exercised by the
integration tests against real sshd hosts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from collector.confine import OVERRIDES
from collector.fanout import (
    ERROR_STATUSES,
    FanOut,
    OnStart,
    gate,
    plan_request,
)
from collector.outbox import HandedOver
from schemas import RESULT_STATUSES, Request, Result, ResultStatus, StatusCounts, TargetError
from tests.support.fakes import FakeExecutor, FakeHost, FakeInventory
from tests.support.records import T0, make_counts, make_request


def _request(targets: Sequence[str] = ("web[1-4]",), **options: Any) -> Request:
    return make_request(targets=targets, **options)


async def _run(
    request: Request,
    executor: FakeExecutor,
    *,
    now: datetime = T0,
    on_start: OnStart[FakeHost] | None = None,
) -> tuple[list[Result], StatusCounts]:
    results: list[Result] = []

    async def collect(result: Result) -> None:
        results.append(result)

    plan = plan_request(request, FakeInventory(), allow_targets=OVERRIDES)  # any names
    fan = FanOut(executor, collector="c1", clock=lambda: now)
    await asyncio.wait_for(fan.run(plan, collect, on_start=on_start), timeout=5)
    return results, StatusCounts.of(r.status for r in results)


# --- the pure rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "budget", "expires_at", "expected"),
    [
        (0, None, None, "run"),
        (10**6, None, None, "run"),  # no budget: never skip
        (0, 0, None, "run"),
        (1, 0, None, "skipped"),  # max_errors=0: the first failure stops the rest
        (2, 2, None, "run"),  # at the budget: still running
        (3, 2, None, "skipped"),  # past it
        (0, None, T0, "expired"),  # expires_at == now counts as expired
        (0, None, T0 - timedelta(seconds=1), "expired"),
        (0, None, T0 + timedelta(seconds=1), "run"),
        (5, 0, T0, "expired"),  # expiry wins over the budget
    ],
)
def test_gate(errors: int, budget: int | None, expires_at: datetime | None, expected: str) -> None:
    assert gate(now=T0, expires_at=expires_at, errors=errors, budget=budget) == expected


@pytest.mark.parametrize("status", RESULT_STATUSES)
def test_what_spends_the_error_budget(status: ResultStatus) -> None:
    # Everything that was tried and did not succeed; the collector's own decisions do not.
    assert (status in ERROR_STATUSES) == (status not in ("ok", "skipped", "expired"))


def test_plan_expands_groups_and_resolves_each_target() -> None:
    request = _request(["@web", "!web2", "root@other:2200"])
    plan = plan_request(request, FakeInventory(), allow_targets=OVERRIDES)
    assert [p.target.name for p in plan.hosts] == ["web1", "web3", "web4", "other"]
    assert plan.hosts[-1].host == FakeHost("other", 2200, "root")
    assert plan.total == 4
    assert plan.budget is None


def test_plan_budget_follows_the_request() -> None:
    assert plan_request(_request(max_errors="50%"), FakeInventory()).budget == 2
    assert plan_request(_request(max_errors=1), FakeInventory()).budget == 1


@pytest.mark.parametrize("targets", [["@nosuch"], ["h[1-200001]"], ["web1", "!web1"]])
def test_plan_refuses_bad_targets(targets: list[str]) -> None:
    with pytest.raises(TargetError):
        plan_request(_request(targets), FakeInventory())


def test_plan_keeps_unresolvable_hosts_as_data() -> None:
    plan = plan_request(_request(["web1", "@bad"]), FakeInventory())
    assert plan.hosts[1].host is None
    assert plan.hosts[1].error is not None
    assert "no address" in plan.hosts[1].error.message


# --- the runner ----------------------------------------------------------------------------------


async def test_every_host_gets_one_result() -> None:
    ex = FakeExecutor(statuses={"web2": "failed"})
    results, counts = await _run(_request(), ex)
    assert sorted(r.host for r in results) == ["web1", "web2", "web3", "web4"]
    assert counts == make_counts(ok=3, failed=1)


async def test_sliding_window_starts_the_next_host_when_any_finishes() -> None:
    # web1 is held; with concurrency 2, web2 finishes and web3 must start while web1 still runs
    # (waves would wait for web1 first).
    hold = asyncio.Event()
    ex = FakeExecutor(hold={"web1": hold})
    task = asyncio.create_task(_run(_request(concurrency=2), ex))
    async with asyncio.timeout(5):
        await ex.wait_started(4)
    assert ex.peak == 2
    hold.set()
    results, _ = await task
    assert [r.host for r in results][-1] == "web1"


async def test_concurrency_bounds_the_window() -> None:
    holds = {f"web{i}": asyncio.Event() for i in range(1, 5)}
    ex = FakeExecutor(hold=holds)
    task = asyncio.create_task(_run(_request(concurrency=3), ex))
    async with asyncio.timeout(5):
        await ex.wait_started(3)
    for _ in range(10):
        await asyncio.sleep(0)
    assert ex.started == ["web1", "web2", "web3"]
    for event in holds.values():
        event.set()
    await task
    assert ex.peak == 3


async def test_error_budget_skips_hosts_not_yet_started() -> None:
    ex = FakeExecutor(statuses={"web1": "failed"})
    results, counts = await _run(_request(max_errors=0, concurrency=1), ex)
    assert ex.started == ["web1"]
    assert [(r.host, r.status) for r in results] == [
        ("web1", "failed"),
        ("web2", "skipped"),
        ("web3", "skipped"),
        ("web4", "skipped"),
    ]
    assert counts.total == 4
    assert counts.skipped == 3
    assert all(r.error is None and r.exit_status is None for r in results[1:])


async def test_hosts_already_running_finish_when_the_budget_runs_out() -> None:
    ex = FakeExecutor(statuses={"web1": "failed", "web2": "timeout"})
    results, counts = await _run(_request(max_errors=0, concurrency=2), ex)
    assert counts == make_counts(failed=1, timeout=1, skipped=2)
    assert set(ex.started) == {"web1", "web2"}
    assert len(results) == 4


async def test_expired_request_runs_nothing() -> None:
    ex = FakeExecutor()
    request = _request(submitted_at=T0 - timedelta(minutes=1), expires_at=T0)
    results, counts = await _run(request, ex, now=T0 + timedelta(seconds=1))
    assert ex.started == []
    assert counts == make_counts(expired=4)
    assert {r.status for r in results} == {"expired"}


async def test_hosts_whose_turn_comes_after_expiry_are_expired() -> None:
    clock = iter([T0, T0 + timedelta(seconds=5), *[T0 + timedelta(seconds=60)] * 10])
    ex = FakeExecutor()
    results: list[Result] = []

    async def collect(result: Result) -> None:
        results.append(result)

    request = _request(concurrency=1, expires_at=T0 + timedelta(seconds=30))
    fan = FanOut(ex, collector="c1", clock=lambda: next(clock))
    await fan.run(plan_request(request, FakeInventory()), collect)
    assert [r.status for r in results] == ["ok", "ok", "expired", "expired"]
    assert ex.started == ["web1", "web2"]


async def test_one_bad_host_never_cancels_its_siblings() -> None:
    ex = FakeExecutor(raise_for={"web2"})
    results, counts = await _run(_request(["web[1-3]", "@bad"]), ex)
    by_host = {r.host: r for r in results}
    assert by_host["web2"].status == "error"
    assert by_host["web2"].error is not None
    assert "executor bug" in by_host["web2"].error.message
    assert by_host["broken1"].status == "error"  # could not be resolved: data, not a crash
    assert by_host["web1"].status == by_host["web3"].status == "ok"
    assert counts.total == 4
    for r in results:
        schemas.encode(r)  # every synthetic result is valid on the wire


async def test_a_publish_failure_stops_the_request() -> None:
    hold = asyncio.Event()
    ex = FakeExecutor(hold={"web2": hold})

    async def broken(result: Result) -> None:
        raise OSError("kafka is gone")

    fan = FanOut(ex, collector="c1")
    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(fan.run(plan_request(_request(), FakeInventory()), broken), 5)
    assert info.group_contains(OSError)
    assert ex.running == 0  # the held host was cancelled, not left behind


async def test_on_start_is_called_for_each_host_that_runs() -> None:
    seen: list[tuple[str, int]] = []

    async def on_start(host: FakeHost, attempt: int) -> None:
        seen.append((host.name, attempt))

    ex = FakeExecutor(statuses={"web1": "failed"})
    await _run(_request(max_errors=0, concurrency=1), ex, on_start=on_start)
    assert seen == [("web1", 1)]  # skipped hosts never get to start


async def test_hand_over_leaves_hosts_not_started_without_a_result() -> None:
    # The ledger refuses to start web3 (the partition is being handed over): web1 and web2
    # keep their results, web3 and web4 get none, and run() says it handed over.
    async def on_start(host: FakeHost, attempt: int) -> None:
        if host.name == "web3":
            raise HandedOver("handing over")

    results: list[Result] = []

    async def collect(result: Result) -> None:
        results.append(result)

    plan = plan_request(_request(concurrency=1), FakeInventory())
    fan = FanOut(FakeExecutor(), collector="c1", clock=lambda: T0)
    handed_over = await asyncio.wait_for(fan.run(plan, collect, on_start=on_start), 5)
    assert handed_over
    assert [r.host for r in results] == ["web1", "web2"]


async def test_keep_starting_false_starts_nothing_more() -> None:
    ex = FakeExecutor()
    plan = plan_request(_request(concurrency=1), FakeInventory())
    fan = FanOut(ex, collector="c1", clock=lambda: T0)
    collected: list[Result] = []

    async def collect(result: Result) -> None:
        collected.append(result)

    assert await fan.run(plan, collect, keep_starting=lambda: not collected)
    assert [r.host for r in collected] == ["web1"]


@settings(max_examples=80, deadline=None)
@given(
    statuses=st.lists(st.sampled_from((*RESULT_STATUSES[:6], "error")), min_size=1, max_size=12),
    concurrency=st.integers(1, 5),
    max_errors=st.none() | st.integers(0, 4),
)
def test_property_one_final_result_per_target(
    statuses: list[ResultStatus], concurrency: int, max_errors: int | None
) -> None:
    names = [f"h{i}" for i in range(len(statuses))]
    ex = FakeExecutor(statuses=dict(zip(names, statuses, strict=True)))
    request = _request(names, concurrency=concurrency, max_errors=max_errors)
    results, counts = asyncio.run(_run(request, ex))
    assert sorted(r.host for r in results) == sorted(names)
    assert counts.total == len(names)
    assert ex.peak <= concurrency
    errors = sum(1 for r in results if r.status in ERROR_STATUSES)
    if max_errors is None:
        assert counts.skipped == 0
    else:
        # Hosts already running when the budget ran out still finish: at most concurrency-1
        # errors beyond the first one past the budget.
        assert errors <= max_errors + concurrency
        if counts.skipped:
            assert errors > max_errors
