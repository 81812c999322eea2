"""Cancel in the request handler: a cancel before the request rejects it; one during the run
kills running hosts and skips the rest, and the completed status says who cancelled."""

from __future__ import annotations

import asyncio

import schemas
from collector.cancelled import CancelRegistry
from collector.handler import RequestHandler
from collector.kafka import Topics
from schemas import Cancel, Request, Result, Status, known
from tests.support.fakes import FakeExecutor, FakeHost, FakePublisher, FakeRecord, fake_handler

TOPICS = Topics.from_prefix("t.")


def _handler(
    publisher: FakePublisher, executor: FakeExecutor, cancels: CancelRegistry
) -> RequestHandler[FakeHost]:
    return fake_handler(publisher, executor, topics=TOPICS, cancels=cancels)


def _record(request: Request) -> FakeRecord:
    return FakeRecord(schemas.encode(request), key=b"k", topic="t.requests", partition=0, offset=7)


def _cancel(request: Request) -> Cancel:
    return Cancel.new(request_id=request.request_id, principal="bob", reason="wrong hosts")


async def test_a_cancel_that_came_first_rejects_the_request_and_nothing_runs() -> None:
    pub, executor = FakePublisher(), FakeExecutor()
    cancels = CancelRegistry(ttl_s=3600, max_entries=10)
    request = Request.new(principal="alice", command="uptime", targets=["web[1-3]"])
    cancels.add(_cancel(request))
    handler = _handler(pub, executor, cancels)
    assert await handler.handle(_record(request)) == "rejected"
    assert executor.started == []
    [(topic, _, status)] = pub.sent
    assert topic == TOPICS.status
    assert isinstance(status, Status)
    assert status.state == "rejected"
    assert known(status.cancelled_by) == "bob"
    assert "request cancelled by bob: wrong hosts" in (known(status.reason) or "")


async def test_a_cancel_during_the_run_kills_running_hosts_and_skips_the_rest() -> None:
    pub = FakePublisher()
    executor = FakeExecutor(hold={"web2": asyncio.Event()})
    cancels = CancelRegistry(ttl_s=3600, max_entries=10)
    request = Request.new(principal="alice", command="uptime", targets=["web[1-3]"], concurrency=1)
    handler = _handler(pub, executor, cancels)
    task = asyncio.create_task(handler.handle(_record(request)))
    async with asyncio.timeout(5):
        await executor.wait_started(2)  # web1 done, web2 running (held)
        cancels.add(_cancel(request))
        assert await task == "completed"
    results = {v.host: v for _, _, v in pub.sent if isinstance(v, Result)}
    assert results["web1"].status == "ok"
    assert (results["web2"].status, results["web2"].error and results["web2"].error.type) == (
        "error",
        "killed",
    )
    assert (results["web3"].status, results["web3"].error and results["web3"].error.type) == (
        "skipped",
        "not_started",
    )
    completed = [v for _, _, v in pub.sent if isinstance(v, Status) and v.state == "completed"]
    assert len(completed) == 1
    assert known(completed[0].cancelled_by) == "bob"
    assert known(completed[0].cancel_reason) == "wrong hosts"
    assert executor.started == ["web1", "web2"]
