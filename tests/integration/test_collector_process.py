"""The collector under signals, restarts and a broker outage; `fleetrun collector` as a process.

These are the tests where the process boundary matters (SIGTERM, exit status, two members of a
consumer group), so the collector runs as a subprocess, except for the broker restart, where the
collector's side of it is the same in-process and the test reads its metrics directly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

from schemas import Request
from stack.env import StackEnv
from tests.support.collector import (
    collector_process,
    collector_settings,
    committed,
    counted,
    counts_by_host,
    finished,
    read_until,
    request_partitions,
    running_collector,
    runs,
    submit,
    wait_committed,
    wait_runs,
)
from tests.support.kafka import Topics
from tests.support.records import make_counts

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = ("demo1", "demo2", "demo3")


def _request(command: str, **options: object) -> Request:
    return Request.new(principal="tests", command=command, targets=("@demo",), **options)


async def test_sigterm_mid_request_loses_nothing_and_runs_nothing_twice(
    topics: Topics, tmp_path: Path, remote_tag: str, stack_env: StackEnv
) -> None:
    # A finishes within the grace period; B outlives it and is cancelled (its remote commands
    # killed); C is still queued when SIGTERM arrives. Every command counts its runs per host.
    a = _request(counted("a", remote_tag, "sleep 3; echo A"))
    b = _request(counted("b", remote_tag, "sleep 60"))
    c = _request(counted("c", remote_tag, "echo C"))
    log = tmp_path / "collector.log"
    async with collector_process(
        topics.prefix, log, shutdown_grace_s=6, max_inflight_requests=2, id="first"
    ) as first:
        # One partition, in this order: A's offset can be committed while B's is still open.
        placed = await submit(topics.bootstrap, topics["requests"], [a, b, c], partition=0)
        await wait_runs(stack_env, remote_tag, ["a", "b"], 6)  # A and B running everywhere
        assert await first.terminate(timeout_s=40) == 0
    text = log.read_text()
    assert "abandoned=0" in text, text[-2000:]
    seen = await read_until(
        topics.bootstrap, topics.prefix, finished(a.request_id, b.request_id), settle_s=0.5
    )
    # B outlived the grace period: its commands were killed on the hosts and reported as such.
    assert {
        (r.status, r.error.type if r.error else None, r.collector)
        for r in seen.for_request(b.request_id)[0]
    } == {("error", "killed", "first")}
    assert not seen.states(c.request_id)  # C was never fetched
    # A (offset 0) and B (offset 1) are committed; C is left to the next collector.
    assert (await committed(topics.bootstrap, topics.prefix + "collector", topics["requests"]))[
        0
    ] == placed[2][1]

    async with collector_process(topics.prefix, log, id="second"):
        seen = await read_until(
            topics.bootstrap,
            topics.prefix,
            finished(a.request_id, b.request_id, c.request_id),
            settle_s=1.0,
        )
        await wait_committed(
            topics.bootstrap,
            topics.prefix + "collector",
            topics["requests"],
            request_partitions(placed),
        )
    for request, name in ((a, "a"), (b, "b"), (c, "c")):
        results, _ = seen.for_request(request.request_id)
        assert counts_by_host(results) == dict.fromkeys(DEMO, 1), request.command
        assert Counter(seen.states(request.request_id))["completed"] == 1
        assert await runs(stack_env, name, remote_tag) == dict.fromkeys(DEMO, 1), name
    assert {(r.status, r.stdout_data) for r in seen.for_request(a.request_id)[0]} == {
        ("ok", b"A\n")
    }
    assert {r.collector for r in seen.for_request(a.request_id)[0]} == {"first"}
    assert {r.collector for r in seen.for_request(c.request_id)[0]} == {"second"}


async def test_sigterm_releases_hosts_marked_ahead_so_the_next_owner_runs_them(
    topics: Topics, tmp_path: Path, remote_tag: str, stack_env: StackEnv
) -> None:
    # concurrency 2 on 3 hosts: demo1 and demo2 run, demo3's `started` mark goes out ahead of
    # them (half a window). SIGTERM within their run: they finish inside the grace period, and
    # demo3, marked but never launched, is released: the next owner runs it, not "unknown".
    request = _request(counted("ahead", remote_tag, "sleep 3; echo done"), concurrency=2)
    log = tmp_path / "collector.log"
    async with collector_process(topics.prefix, log, shutdown_grace_s=20, id="first") as first:
        placed = await submit(topics.bootstrap, topics["requests"], [request])
        await wait_runs(stack_env, remote_tag, ["ahead"], 2)
        assert await first.terminate(timeout_s=40) == 0
    assert await runs(stack_env, "ahead", remote_tag) == {"demo1": 1, "demo2": 1, "demo3": 0}
    async with collector_process(topics.prefix, log, id="second"):
        seen = await read_until(
            topics.bootstrap, topics.prefix, finished(request.request_id), settle_s=0.5
        )
        await wait_committed(
            topics.bootstrap,
            topics.prefix + "collector",
            topics["requests"],
            request_partitions(placed),
        )
    assert await runs(stack_env, "ahead", remote_tag) == dict.fromkeys(DEMO, 1)
    results, _ = seen.for_request(request.request_id)
    assert {(r.host, r.status, r.collector) for r in results} == {
        ("demo1", "ok", "first"),
        ("demo2", "ok", "first"),
        ("demo3", "ok", "second"),
    }


async def test_broker_restart_mid_request_loses_no_result(topics: Topics) -> None:
    settings = collector_settings(topics.prefix, publish_timeout_s=60.0)
    request = _request("sleep 4; echo done")
    async with running_collector(settings):
        placed = await submit(topics.bootstrap, topics["requests"], [request])
        await read_until(
            topics.bootstrap, topics.prefix, lambda s: bool(s.states(request.request_id))
        )
        # The hosts are mid-command while the broker goes away and comes back.
        restart = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stack", "restart", "kafka", cwd=REPO_ROOT, env=dict(os.environ)
        )
        async with asyncio.timeout(120):
            assert await restart.wait() == 0
        seen = await read_until(
            topics.bootstrap, topics.prefix, finished(request.request_id), timeout_s=90
        )
        await wait_committed(
            topics.bootstrap,
            settings.group_id,
            topics["requests"],
            request_partitions(placed),
            timeout_s=60,
        )
    results, _ = seen.for_request(request.request_id)
    assert counts_by_host(results) == dict.fromkeys(DEMO, 1)
    assert {r.stdout_data for r in results} == {b"done\n"}
    completed = seen.completed(request.request_id)
    assert completed is not None
    assert completed.counts == make_counts(ok=3)


async def test_two_collectors_in_one_group_handle_each_request_once(
    topics: Topics, tmp_path: Path, stack_env: StackEnv
) -> None:
    n = 12
    async with (
        collector_process(topics.prefix, tmp_path / "c1.log", id="c1") as c1,
        collector_process(topics.prefix, tmp_path / "c2.log", id="c2") as c2,
    ):
        # Wait for the group to settle: both members hold partitions, none twice (generous: see
        # wait_healthy).
        async with asyncio.timeout(90):
            while True:
                h1, h2 = await c1.health(), await c2.health()
                p1 = set(h1["assigned_partitions"]) if h1 else set()
                p2 = set(h2["assigned_partitions"]) if h2 else set()
                if p1 and p2 and not p1 & p2 and len(p1 | p2) == 6:
                    break
                await asyncio.sleep(0.2)
        requests = [_request(f"echo {i}") for i in range(n)]
        await submit(topics.bootstrap, topics["requests"], requests)
        seen = await read_until(
            topics.bootstrap,
            topics.prefix,
            finished(*(r.request_id for r in requests)),
            settle_s=1.0,
        )
        metrics = await c1.metrics_text() + await c2.metrics_text()
    for r in requests:
        results, _ = seen.for_request(r.request_id)
        assert counts_by_host(results) == dict.fromkeys(DEMO, 1)
        assert Counter(seen.states(r.request_id)) == {"accepted": 1, "completed": 1}
    assert {r.collector for r in seen.results} == {"c1", "c2"}  # both did work
    reused = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('fleetrun_collector_connections_total{kind="reused"}')
    )
    assert reused > 0
    assert "collector stopped" in (tmp_path / "c1.log").read_text()


async def test_rebalance_drains_finishing_work_and_hands_back_the_rest(
    topics: Topics, remote_tag: str, stack_env: StackEnv
) -> None:
    # On revocation, A (a few seconds left) finishes within rebalance_drain_s and is committed;
    # B (60 s) is cancelled and left uncommitted; the partition's next owner finds B's hosts
    # started and not done in the ledger: outcome_unknown, never a second run.
    a = _request(counted("ra", remote_tag, "sleep 2; echo A"))
    b = _request(counted("rb", remote_tag, "sleep 60"))
    one = collector_settings(topics.prefix, id="one", rebalance_drain_s=4.0)
    two = collector_settings(topics.prefix, id="two", rebalance_drain_s=4.0)
    async with running_collector(one) as first:
        await submit(topics.bootstrap, topics["requests"], [a, b], partition=0)
        await wait_runs(stack_env, remote_tag, ["ra", "rb"], 6)
        async with running_collector(two):  # joining the group revokes everything from `one`
            seen = await read_until(
                topics.bootstrap,
                topics.prefix,
                finished(a.request_id, b.request_id),
                timeout_s=45,
                settle_s=1.0,
            )
        assert first.collector.summary.revoked == 0  # killed and reported, not abandoned
    results_a, _ = seen.for_request(a.request_id)
    results_b, _ = seen.for_request(b.request_id)
    assert counts_by_host(results_a) == dict.fromkeys(DEMO, 1)
    assert Counter(seen.states(a.request_id)) == {"accepted": 1, "completed": 1}
    assert {r.stdout_data for r in results_a} == {b"A\n"}
    assert {r.collector for r in results_a} == {"one"}  # drained, not handed over
    assert counts_by_host(results_b) == dict.fromkeys(DEMO, 1)
    # Past the drain B's commands were killed on the hosts and reported by `one`.
    assert {(r.error.type if r.error else None, r.collector) for r in results_b} == {
        ("killed", "one")
    }
    assert Counter(seen.states(b.request_id)) == {"accepted": 1, "completed": 1}
    assert await runs(stack_env, "rb", remote_tag) == dict.fromkeys(DEMO, 1)


async def test_a_second_sigterm_skips_the_grace_period(
    topics: Topics, tmp_path: Path, remote_tag: str, stack_env: StackEnv
) -> None:
    request = _request(counted("s2", remote_tag, "sleep 30"))
    log = tmp_path / "collector.log"
    async with collector_process(topics.prefix, log, shutdown_grace_s=120) as sub:
        await submit(topics.bootstrap, topics["requests"], [request])
        await wait_runs(stack_env, remote_tag, ["s2"], 3)  # running on every host
        sub.proc.send_signal(signal.SIGTERM)
        await sub.wait_log("draining in-flight requests")
        # The remote commands are killed and the collector exits well before 120 s.
        assert await sub.terminate(timeout_s=20) == 0
    text = log.read_text()
    assert "second stop request" in text
    assert "abandoned=0" in text
    seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
    assert {
        (r.status, r.error.type if r.error else None)
        for r in seen.for_request(request.request_id)[0]
    } == {("error", "killed")}
    assert await runs(stack_env, "s2", remote_tag) == dict.fromkeys(DEMO, 1)
