"""RequestHandler with a fake executor and a fake publisher: what gets published, in what order.

Kafka itself is exercised by tests/integration/test_collector*.py; here the publisher only
records (topic, key, decoded value) so the handler's rules can be checked table by table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest

import schemas
from collector.errors import CollectorError, RecordTooLarge
from collector.handler import RequestHandler
from collector.kafka import Publisher, Topics
from collector.metrics import CollectorMetrics
from schemas import Request, Result, StatusCounts
from tests.unit.test_collector_fanout import FakeExecutor, FakeHost, FakeInventory

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
TOPICS = Topics.from_prefix("t.")


@dataclass(frozen=True)
class Record:
    value: bytes | None
    key: bytes | None = b"key"
    topic: str = "t.requests"
    partition: int = 2
    offset: int = 41
    timestamp: int = 1_714_564_800_000


@dataclass
class FakePublisher:
    """Records what would be published; can refuse records on chosen topics."""

    sent: list[tuple[str, bytes | None, Any]] = field(default_factory=list)
    refuse: Mapping[str, Exception] = field(default_factory=dict)
    gate: asyncio.Event | None = None  # hold result acknowledgements until set

    async def publish(self, topic: str, key: bytes | None, value: bytes, **_: Any) -> None:
        if topic in self.refuse:
            exc = self.refuse[topic]
            if not isinstance(exc, RecordTooLarge) or len(value) > 2_000:
                raise exc
        if self.gate is not None and topic == TOPICS.results:
            await self.gate.wait()
        self.sent.append((topic, key, schemas.decode(value)))

    def on(self, topic: str) -> list[Any]:
        return [v for t, _, v in self.sent if t == topic]


def _handler(
    publisher: FakePublisher, executor: FakeExecutor | None = None
) -> tuple[RequestHandler[FakeHost], CollectorMetrics]:
    metrics = CollectorMetrics()
    handler: RequestHandler[FakeHost] = RequestHandler(
        collector="c1",
        topics=TOPICS,
        publisher=cast(Publisher, publisher),
        executor=executor or FakeExecutor(),
        inventory=FakeInventory(),
        metrics=metrics,
        max_message_bytes=1_000_000,
        default_user="deploy",
    )
    return handler, metrics


def _request(**options: object) -> Request:
    base = Request.new(principal="alice", command="uname -r", targets=["web[1-3]"])
    return replace(base, **options)  # type: ignore[arg-type]


async def test_a_request_publishes_accepted_results_then_completed() -> None:
    pub = FakePublisher()
    handler, metrics = _handler(pub, FakeExecutor(statuses={"web2": "failed"}))
    request = _request()
    assert await handler.handle(Record(schemas.encode(request))) == "completed"
    statuses = pub.on(TOPICS.status)
    assert [s.state for s in statuses] == ["accepted", "completed"]
    assert statuses[0].targets_total == 3
    assert statuses[1].counts == StatusCounts(ok=2, failed=1)
    assert sorted(r.host for r in pub.on(TOPICS.results)) == ["web1", "web2", "web3"]
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
    pub = FakePublisher(gate=gate)
    handler, _ = _handler(pub)
    task = asyncio.create_task(handler.handle(Record(schemas.encode(_request()))))
    for _ in range(50):
        await asyncio.sleep(0)
    assert [s.state for s in pub.on(TOPICS.status)] == ["accepted"]
    assert not task.done()
    gate.set()
    assert await asyncio.wait_for(task, 5) == "completed"
    assert [s.state for s in pub.on(TOPICS.status)] == ["accepted", "completed"]


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
        raw = schemas.encode(replace(request, targets=("@nosuch",)))
    elif value == "too-many-hosts":
        raw = schemas.encode(replace(request, targets=("h[1-9999]", "g[1-9999]")))
    else:
        raw = cast(bytes | None, value)
    pub = FakePublisher()
    executor = FakeExecutor()
    handler, metrics = _handler(pub, executor)
    outcome = await handler.handle(Record(raw))
    assert executor.started == []
    assert pub.on(TOPICS.results) == []
    (letter,) = pub.on(TOPICS.dlq)
    assert (letter.source_topic, letter.partition, letter.offset) == ("t.requests", 2, 41)
    assert letter.value == raw
    assert letter.key == b"key"
    assert letter.stage == "collector"
    assert letter.instance == "c1"
    assert problem in letter.error.message
    assert letter.source_timestamp == T0
    rejected = pub.on(TOPICS.status)
    if has_id:
        assert outcome == "rejected"
        assert [s.state for s in rejected] == ["rejected"]
        assert rejected[0].request_id == request.request_id
        assert letter.request_id == request.request_id
        assert problem in (rejected[0].reason or "")
    else:
        assert outcome == "dead_lettered"
        assert rejected == []
        assert letter.request_id is None
    assert metrics.registry.get_sample_value("fleetrun_collector_dead_letters_total") == 1


async def test_expired_request_gets_expired_results_not_a_rejection() -> None:
    pub = FakePublisher()
    executor = FakeExecutor()
    handler, _ = _handler(pub, executor)
    request = _request(submitted_at=T0, expires_at=T0.replace(minute=1))
    assert await handler.handle(Record(schemas.encode(request))) == "completed"
    assert executor.started == []
    assert {r.status for r in pub.on(TOPICS.results)} == {"expired"}
    assert pub.on(TOPICS.status)[-1].counts == StatusCounts(expired=3)


async def test_an_unencodable_result_is_replaced_by_an_error_result() -> None:
    class BadExecutor(FakeExecutor):
        async def run(self, host: FakeHost, request: Request, **kw: Any) -> Result:
            result = await super().run(host, request, **kw)
            # claims fewer bytes than it holds: the contract refuses it
            return replace(result, stdout=b"abc", stdout_bytes=1) if host.name == "web2" else result

    pub = FakePublisher()
    handler, _ = _handler(pub, BadExecutor())
    await handler.handle(Record(schemas.encode(_request())))
    by_host = {r.host: r for r in pub.on(TOPICS.results)}
    assert by_host["web2"].status == "error"
    assert by_host["web2"].error.type == "InvalidResult"
    assert by_host["web2"].stdout_bytes == 1
    assert pub.on(TOPICS.status)[-1].counts == StatusCounts(ok=2, error=1)


async def test_a_dead_letter_too_large_for_its_topic_keeps_the_error_without_the_value() -> None:
    pub = FakePublisher(refuse={TOPICS.dlq: RecordTooLarge("too large")})
    handler, _ = _handler(pub)
    raw = b"x" * 10_000
    assert await handler.handle(Record(raw)) == "dead_lettered"
    (letter,) = pub.on(TOPICS.dlq)
    assert letter.value is None
    assert "10,000 bytes omitted" in letter.error.message
    assert letter.offset == 41


async def test_kafka_refusing_results_for_good_fails_the_request_not_the_host() -> None:
    pub = FakePublisher(refuse={TOPICS.results: CollectorError("denied", retriable=False)})
    handler, _ = _handler(pub)
    with pytest.raises(CollectorError, match="denied"):
        await handler.handle(Record(schemas.encode(_request())))
    assert [s.state for s in pub.on(TOPICS.status)] == ["accepted"]  # never completed
