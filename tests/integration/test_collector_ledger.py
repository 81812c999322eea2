"""At most once per host, one request per id: the execution ledger against real Kafka and sshd.

Every command here appends to a per-host marker before it does anything else (`counted`), so
the assertions count real executions on the hosts, not only the records published.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import schemas
from collector.errors import CollectorError
from collector.resume import OUTCOME_UNKNOWN, REUSED_ID
from schemas import Request, known
from stack.config import TOPIC_PARTITIONS
from stack.env import StackEnv
from stack.topics import create_topics, delete_topics
from tests.support.collector import (
    collector_process,
    collector_settings,
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
from tests.support.kafka import Topics, consume_n, unique_prefix
from tests.support.records import make_counts

DEMO = ("demo1", "demo2", "demo3")


def _request(command: str, targets: tuple[str, ...] = ("@demo",), **options: Any) -> Request:
    return Request.new(principal="tests", command=command, targets=targets, **options)


async def test_the_same_record_twice_runs_once(
    topics: Topics, stack_env: StackEnv, remote_tag: str
) -> None:
    request = _request(counted("dup", remote_tag, "echo once"))
    settings = collector_settings(topics.prefix)
    async with running_collector(settings) as running:
        # A producer retry: the very same record twice, on the same partition.
        placed = await submit(topics.bootstrap, topics["requests"], [request, request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
        await wait_committed(
            topics.bootstrap, settings.group_id, topics["requests"], request_partitions(placed)
        )
        duplicates = running.sample("fleetrun_collector_requests_total", {"outcome": "duplicate"})
    assert duplicates == 1
    assert await runs(stack_env, "dup", remote_tag) == dict.fromkeys(DEMO, 1)
    results, _ = seen.for_request(request.request_id)
    assert counts_by_host(results) == dict.fromkeys(DEMO, 1)
    assert Counter(seen.states(request.request_id)) == {"accepted": 1, "completed": 1}


async def test_a_reused_request_id_is_rejected_and_runs_nowhere(
    topics: Topics, stack_env: StackEnv, remote_tag: str
) -> None:
    first = _request(counted("first", remote_tag, "echo first"))
    other = Request.new(
        principal="someone-else",
        command=counted("other", remote_tag, "echo other"),
        targets=("demo1",),
        request_id=first.request_id,
    )
    async with running_collector(collector_settings(topics.prefix)):
        await submit(topics.bootstrap, topics["requests"], [first])
        await read_until(topics.bootstrap, topics.prefix, finished(first.request_id))
        await submit(topics.bootstrap, topics["requests"], [other])
        seen = await read_until(
            topics.bootstrap,
            topics.prefix,
            lambda s: "rejected" in s.states(first.request_id),
            settle_s=0.5,
        )
        letters = await consume_n(topics.bootstrap, topics["dlq"], 1)
    assert await runs(stack_env, "other", remote_tag) == dict.fromkeys(DEMO, 0)
    assert await runs(stack_env, "first", remote_tag) == dict.fromkeys(DEMO, 1)
    results, statuses = seen.for_request(first.request_id)
    assert counts_by_host(results) == dict.fromkeys(DEMO, 1)  # the first request's, only
    assert {r.stdout_data for r in results} == {b"first\n"}
    assert [s.state for s in statuses] == ["accepted", "completed", "rejected"]
    rejected = statuses[-1]
    assert REUSED_ID in (rejected.reason or "")
    assert (
        known(rejected.command) is None
    )  # carries nothing that could overwrite the stored request
    letter = schemas.decode_dead_letter(letters[0][1])
    assert letter.request_id == first.request_id
    assert REUSED_ID in letter.error.message


async def test_sigkill_mid_request_no_host_runs_twice(
    topics: Topics, stack_env: StackEnv, remote_tag: str, tmp_path: Path
) -> None:
    # concurrency 1: demo1 finishes, demo2 is running when the collector is killed, demo3 has
    # not started. The next owner must not run demo1 or demo2 again.
    request = _request(counted("kill", remote_tag, "sleep 3; echo done"), concurrency=1)
    async with collector_process(
        topics.prefix, tmp_path / "first.log", id="first", session_timeout_ms=6000
    ) as first:
        placed = await submit(topics.bootstrap, topics["requests"], [request])
        await wait_runs(stack_env, remote_tag, ["kill"], 2)
        first.proc.kill()
        await first.proc.wait()
    settings = collector_settings(topics.prefix, id="second")
    async with running_collector(settings):
        seen = await read_until(
            topics.bootstrap, topics.prefix, finished(request.request_id), timeout_s=60
        )
        await wait_committed(
            topics.bootstrap, settings.group_id, topics["requests"], request_partitions(placed)
        )
    assert await runs(stack_env, "kill", remote_tag) == dict.fromkeys(DEMO, 1)
    results, statuses = seen.for_request(request.request_id)
    assert counts_by_host(results) == dict.fromkeys(DEMO, 1)
    by_host = {r.host: r for r in results}
    assert (by_host["demo1"].status, by_host["demo1"].collector) == ("ok", "first")
    assert by_host["demo2"].status == "error"
    assert by_host["demo2"].error is not None
    assert by_host["demo2"].error.type == OUTCOME_UNKNOWN
    assert (by_host["demo3"].status, by_host["demo3"].collector) == ("ok", "second")
    assert Counter(s.state for s in statuses) == {"accepted": 1, "completed": 1}
    completed = seen.completed(request.request_id)
    assert completed is not None
    assert completed.counts == make_counts(ok=2, error=1)


async def test_an_idempotent_request_runs_unknown_hosts_again_as_the_next_attempt(
    topics: Topics, stack_env: StackEnv, remote_tag: str, tmp_path: Path
) -> None:
    request = _request(
        counted("idem", remote_tag, "sleep 3; echo done"),
        ("demo1",),
        idempotent=True,
    )
    async with collector_process(
        topics.prefix, tmp_path / "first.log", id="first", session_timeout_ms=6000
    ) as first:
        await submit(topics.bootstrap, topics["requests"], [request])
        await wait_runs(stack_env, remote_tag, ["idem"], 1)
        first.proc.kill()
        await first.proc.wait()
    async with running_collector(collector_settings(topics.prefix, id="second")):
        seen = await read_until(
            topics.bootstrap, topics.prefix, finished(request.request_id), timeout_s=60
        )
    assert (await runs(stack_env, "idem", remote_tag))["demo1"] == 2
    results, _ = seen.for_request(request.request_id)
    assert [(r.host, r.attempt, r.status) for r in results] == [("demo1", 2, "ok")]


async def test_a_ledger_with_other_partitions_than_requests_refuses_to_start(
    stack_env: StackEnv,
) -> None:
    prefix = unique_prefix()
    partitions = dict(TOPIC_PARTITIONS) | {"ledger": TOPIC_PARTITIONS["requests"] - 1}
    names = await create_topics(stack_env.kafka_bootstrap, prefix, partitions)
    try:
        with pytest.raises(CollectorError, match="must have the same number"):
            async with running_collector(collector_settings(prefix)):
                pass
    finally:
        await delete_topics(stack_env.kafka_bootstrap, names)
