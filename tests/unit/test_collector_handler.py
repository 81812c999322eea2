"""RequestHandler with a fake executor and a fake publisher: what gets published, in what order.

Kafka itself is exercised by tests/integration/test_collector*.py; here the publisher only
records (topic, key, decoded value) so the handler's rules can be checked table by table.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

import msgspec
import orjson
import pytest

import schemas
from collector.errors import CollectorError, RecordTooLarge
from collector.handler import RequestHandler
from collector.kafka import Topics
from collector.metrics import CollectorMetrics
from schemas import Request, Result, format_timestamp, known
from tests.support.fakes import (
    FakeExecutor,
    FakeHost,
    FakePublisher,
    FakeRecord,
    fake_handler,
)
from tests.support.records import T0, make_counts, make_result

TOPICS = Topics.from_prefix("t.")


def _record(value: bytes | None) -> FakeRecord:
    """A request record as consumed from t.requests (partition 2, offset 41, at T0)."""
    return FakeRecord(value, key=b"key", topic="t.requests", partition=2, offset=41)


def _handler(
    publisher: FakePublisher, executor: FakeExecutor | None = None
) -> tuple[RequestHandler[FakeHost], CollectorMetrics]:
    metrics = CollectorMetrics()
    return fake_handler(publisher, executor, topics=TOPICS, metrics=metrics), metrics


def _request(**options: Any) -> Request:
    return Request.new(principal="alice", command="uname -r", targets=["web[1-3]"], **options)


async def test_a_request_publishes_accepted_results_then_completed() -> None:
    pub = FakePublisher()
    handler, metrics = _handler(pub, FakeExecutor(statuses={"web2": "failed"}))
    request = _request()
    assert await handler.handle(_record(schemas.encode(request))) == "completed"
    statuses = pub.statuses(TOPICS.status)
    assert [s.state for s in statuses] == ["accepted", "completed"]
    assert statuses[0].targets_total == 3
    assert statuses[1].counts == make_counts(ok=2, failed=1)
    assert sorted(r.host for r in pub.results(TOPICS.results)) == ["web1", "web2", "web3"]
    assert {k for _, k, _ in pub.sent} == {request.request_id.encode()}
    # completed comes after every result (status and results are separate topics: order of
    # sending is what the handler controls).
    assert [t for t, _, _ in pub.sent][-1] == TOPICS.status
    assert (
        metrics.registry.get_sample_value("fleetrun_collector_results_total", {"status": "ok"}) == 2
    )
    assert (
        metrics.registry.get_sample_value(
            "fleetrun_collector_requests_total", {"outcome": "completed"}
        )
        == 1
    )


async def test_completed_waits_for_every_result_acknowledgement() -> None:
    gate = asyncio.Event()
    pub = FakePublisher(gate=gate, gated_topic=TOPICS.results)
    handler, _ = _handler(pub)
    task = asyncio.create_task(handler.handle(_record(schemas.encode(_request()))))
    for _ in range(50):
        await asyncio.sleep(0)
    assert [s.state for s in pub.statuses(TOPICS.status)] == ["accepted"]
    assert not task.done()
    gate.set()
    assert await asyncio.wait_for(task, 5) == "completed"
    assert [s.state for s in pub.statuses(TOPICS.status)] == ["accepted", "completed"]


@pytest.mark.parametrize(
    ("value", "has_id", "problem"),
    [
        (b"\xff not json", False, "not valid JSON"),
        (None, False, "no value"),
        (b"[1, 2]", False, "must be a JSON object"),
        ("concurrency", True, "concurrency"),
        ("schema-v2", True, "unsupported schema version"),
        ("result-on-request-topic", True, "wrong topic"),
        ("unknown-group", True, "'@nosuch' is not a group"),
        ("too-many-hosts", True, "limit per request"),
    ],
)
async def test_bad_input_executes_nothing_and_is_dead_lettered(
    value: bytes | str | None, has_id: bool, problem: str
) -> None:
    request = _request()
    doc = schemas.as_document(request)
    raw: bytes | None
    if value == "concurrency":
        raw = orjson.dumps(doc | {"concurrency": 0})
    elif value == "schema-v2":
        raw = orjson.dumps(doc | {"schema": "fleetrun.request/2"})
    elif value == "result-on-request-topic":
        raw = orjson.dumps(doc | {"schema": "fleetrun.result/1"})
    elif value == "unknown-group":
        raw = schemas.encode(msgspec.structs.replace(request, targets=("@nosuch",)))
    elif value == "too-many-hosts":
        raw = schemas.encode(msgspec.structs.replace(request, targets=("h[1-99999]", "g[1-99999]")))
    else:
        assert value is None or isinstance(value, bytes)
        raw = value
    pub = FakePublisher()
    executor = FakeExecutor()
    handler, metrics = _handler(pub, executor)
    outcome = await handler.handle(_record(raw))
    assert executor.started == []
    assert pub.results(TOPICS.results) == []
    (letter,) = pub.dead_letters(TOPICS.dlq)
    assert (letter.source_topic, letter.partition, letter.offset) == ("t.requests", 2, 41)
    assert letter.value == raw
    assert letter.key == b"key"
    assert letter.stage == "collector"
    assert letter.instance == "c1"
    assert problem in letter.error.message
    assert letter.source_timestamp == format_timestamp(T0)
    rejected = pub.statuses(TOPICS.status)
    if has_id:
        assert outcome == "rejected"
        assert [s.state for s in rejected] == ["rejected"]
        assert rejected[0].request_id == request.request_id
        assert letter.request_id == request.request_id
        assert problem in (known(rejected[0].reason) or "")
    else:
        assert outcome == "dead_lettered"
        assert rejected == []
        assert letter.request_id is None
    assert metrics.registry.get_sample_value("fleetrun_collector_dead_letters_total") == 1


async def test_expired_request_gets_expired_results_not_a_rejection() -> None:
    pub = FakePublisher()
    executor = FakeExecutor()
    handler, _ = _handler(pub, executor)
    request = _request(
        submitted_at=format_timestamp(T0), expires_at=format_timestamp(T0 + timedelta(minutes=1))
    )
    assert await handler.handle(_record(schemas.encode(request))) == "completed"
    assert executor.started == []
    assert {r.status for r in pub.results(TOPICS.results)} == {"expired"}
    assert pub.statuses(TOPICS.status)[-1].counts == make_counts(expired=3)


async def test_an_unencodable_result_is_replaced_by_an_error_result() -> None:
    class BadExecutor(FakeExecutor):
        def result(self, host: FakeHost, request: Request, collector: str) -> Result:
            if host.name != "web2":
                return super().result(host, request, collector)
            # A negative exit status: the record can be built, but the contract's bounds (checked
            # when it is encoded) refuse it.
            return make_result(
                request.request_id, host.name, status="failed", exit_status=-1, stdout=b"abc"
            )

    pub = FakePublisher()
    handler, _ = _handler(pub, BadExecutor())
    await handler.handle(_record(schemas.encode(_request())))
    by_host = {r.host: r for r in pub.results(TOPICS.results)}
    web2 = by_host["web2"]
    assert web2.status == "error"
    assert web2.error is not None
    assert web2.error.type == "InvalidResult"
    assert "exit_status" in web2.error.message
    # What the host printed is left out, but its size and digest are kept.
    assert (web2.stdout, web2.stdout_bytes, web2.stdout_truncated) == ("", 3, True)
    assert web2.stdout_sha256 == hashlib.sha256(b"abc").hexdigest()
    assert web2.exit_status is None
    assert pub.statuses(TOPICS.status)[-1].counts == make_counts(ok=2, error=1)


async def test_a_dead_letter_too_large_for_its_topic_keeps_the_error_without_the_value() -> None:
    pub = FakePublisher(refuse={TOPICS.dlq: RecordTooLarge("too large")})
    handler, _ = _handler(pub)
    raw = b"x" * 10_000
    assert await handler.handle(_record(raw)) == "dead_lettered"
    (letter,) = pub.dead_letters(TOPICS.dlq)
    assert letter.value is None
    assert "10,000 bytes omitted" in letter.error.message
    assert letter.offset == 41


async def test_kafka_refusing_results_for_good_fails_the_request_not_the_host() -> None:
    pub = FakePublisher(refuse={TOPICS.results: CollectorError("denied", retriable=False)})
    handler, _ = _handler(pub)
    with pytest.raises(CollectorError, match="denied"):
        await handler.handle(_record(schemas.encode(_request())))
    assert [s.state for s in pub.statuses(TOPICS.status)] == ["accepted"]  # never completed
