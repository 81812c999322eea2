"""Cancel reaching the collector that runs the request, on the real stack: running commands are
killed on the hosts, hosts not started are skipped, the completed status says who cancelled;
a cancel that came first makes the request rejected and it runs nowhere."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

import schemas
from schemas import Cancel, Request, known
from stack.env import StackEnv, kafka_options
from tests.support.collector import (
    collector_settings,
    counted,
    counts_by_host,
    finished,
    read_until,
    running_collector,
    runs,
    submit,
    wait_runs,
)
from tests.support.kafka import Topics

DEMO = ("demo1", "demo2", "demo3")


async def _send_cancel(topics: Topics, cancel: Cancel) -> None:
    producer = AIOKafkaProducer(**kafka_options(topics.bootstrap))
    await producer.start()
    try:
        await producer.send_and_wait(
            topics["cancels"], schemas.encode(cancel), key=cancel.request_id.encode()
        )
    finally:
        await producer.stop()


async def test_a_cancel_kills_running_hosts_and_skips_the_rest(
    topics: Topics, stack_env: StackEnv, remote_tag: str
) -> None:
    request = Request.new(
        principal="tests",
        command=counted("cx", remote_tag, "sleep 30"),
        targets=("@demo",),
        concurrency=2,
    )
    async with running_collector(collector_settings(topics.prefix)):
        await submit(topics.bootstrap, topics["requests"], [request])
        await wait_runs(stack_env, remote_tag, ["cx"], 2)  # two hosts running, one waiting
        await _send_cancel(
            topics, Cancel.new(request.request_id, principal="bob", reason="wrong hosts")
        )
        seen = await read_until(
            topics.bootstrap, topics.prefix, finished(request.request_id), timeout_s=30
        )
    results, _ = seen.for_request(request.request_id)
    assert counts_by_host(results) == dict.fromkeys(DEMO, 1)
    kinds = sorted((r.status, r.error.type if r.error else None) for r in results)
    assert kinds == [("error", "killed"), ("error", "killed"), ("skipped", "not_started")]
    assert all(
        "request cancelled by bob: wrong hosts" in (r.error.message if r.error else "")
        for r in results
    )
    assert sum((await runs(stack_env, "cx", remote_tag)).values()) == 2  # the third never ran
    completed = seen.completed(request.request_id)
    assert completed is not None
    assert (known(completed.cancelled_by), known(completed.cancel_reason)) == (
        "bob",
        "wrong hosts",
    )


async def test_a_cancel_that_came_first_rejects_the_request(
    topics: Topics, stack_env: StackEnv, remote_tag: str
) -> None:
    request = Request.new(
        principal="tests", command=counted("cf", remote_tag, "true"), targets=("@demo",)
    )
    await _send_cancel(topics, Cancel.new(request.request_id, principal="bob"))
    async with running_collector(collector_settings(topics.prefix)):
        await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(
            topics.bootstrap, topics.prefix, lambda s: "rejected" in s.states(request.request_id)
        )
    assert seen.states(request.request_id) == ["rejected"]
    assert not seen.for_request(request.request_id)[0]
    assert await runs(stack_env, "cf", remote_tag) == dict.fromkeys(DEMO, 0)
