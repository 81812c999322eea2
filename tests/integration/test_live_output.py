"""Live output (stream_output): chunks on the output topic while the command runs, against real
Kafka and the stack's sshd hosts; the results are the same as without it."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition

import schemas
from schemas import Output, Request
from stack.env import kafka_options
from tests.support.collector import (
    collector_settings,
    finished,
    read_until,
    running_collector,
    submit,
)
from tests.support.kafka import Topics

DEMO = ("demo1", "demo2", "demo3")
# Three lines 0.4 s apart: a live stream shows them in more than one chunk.
CHATTY = "for i in 1 2 3; do echo line$i; sleep 0.4; done; echo err >&2"


async def _chunks_until(topics: Topics, done: int, *, timeout_s: float = 30.0) -> list[Output]:
    """Every chunk on the output topic, read until `done` end-of-stream chunks came."""
    consumer = AIOKafkaConsumer(
        topics["output"], **kafka_options(topics.bootstrap), auto_offset_reset="earliest"
    )
    await consumer.start()
    chunks: list[Output] = []
    try:
        async with asyncio.timeout(timeout_s):
            while sum(c.eos for c in chunks) < done:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    chunks += [schemas.decode_output_chunk(r.value) for r in records]
    finally:
        await consumer.stop()
    return chunks


async def test_chunks_arrive_while_running_and_add_up_to_the_result(topics: Topics) -> None:
    request = Request.new(principal="tests", command=CHATTY, targets=("@demo",), stream_output=True)
    quiet = Request.new(principal="tests", command="echo quiet", targets=("@demo",))
    async with running_collector(collector_settings(topics.prefix)):
        await submit(topics.bootstrap, topics["requests"], [quiet, request])
        seen = await read_until(
            topics.bootstrap, topics.prefix, finished(request.request_id, quiet.request_id)
        )
        chunks = await _chunks_until(topics, done=2 * len(DEMO))
    assert {c.request_id for c in chunks} == {request.request_id}  # none for `quiet`
    results, _ = seen.for_request(request.request_id)
    by_host: dict[str, list[Output]] = defaultdict(list)
    for chunk in chunks:
        by_host[chunk.host].append(chunk)
    assert sorted(by_host) == list(DEMO)
    for result in results:
        mine = by_host[result.host]
        assert [c.sequence for c in mine] == list(range(len(mine)))  # in order, no gap
        for stream in ("stdout", "stderr"):
            parts = [c for c in mine if c.stream == stream]
            data = b"".join(c.data_bytes for c in parts)
            assert data == getattr(result, f"{stream}_data")
            assert hashlib.sha256(data).hexdigest() == getattr(result, f"{stream}_sha256")
            assert parts[-1].eos
            assert not any(c.eos for c in parts[:-1])
            assert all(c.dropped_bytes == 0 for c in parts)
        # Live, not at the end: the lines came in separate chunks, the first well before the end.
        stdout = [c for c in mine if c.stream == "stdout" and c.data]
        assert len(stdout) >= 2, stdout
        first = schemas.parse_timestamp(stdout[0].at)
        assert (schemas.parse_timestamp(result.finished_at) - first).total_seconds() > 0.5


async def test_the_live_budget_setting_bounds_what_streams_not_the_result(topics: Topics) -> None:
    # 3 hosts × 4,000 bytes against a 1,000-byte budget for the request: most is dropped and
    # said so, and every result still carries all of its output.
    request = Request.new(
        principal="tests", command="head -c 4000 /dev/zero", targets=("@demo",), stream_output=True
    )
    settings = collector_settings(topics.prefix, live_output_budget_bytes=1000)
    async with running_collector(settings):
        await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
        chunks = await _chunks_until(topics, done=2 * len(DEMO))
    streamed = sum(len(c.data_bytes) for c in chunks)
    assert streamed == 1000
    last_stdout = [c for c in chunks if c.stream == "stdout" and c.eos]
    assert sum(c.dropped_bytes for c in last_stdout) == 3 * 4000 - 1000
    results, _ = seen.for_request(request.request_id)
    assert [r.stdout_bytes for r in results] == [4000, 4000, 4000]


async def test_live_output_off_publishes_no_chunk_and_the_request_runs(topics: Topics) -> None:
    request = Request.new(principal="tests", command=CHATTY, targets=("@demo",), stream_output=True)
    settings = collector_settings(topics.prefix, live_output=False)
    async with running_collector(settings):
        await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
    results, _ = seen.for_request(request.request_id)
    assert [r.status for r in results] == ["ok"] * len(DEMO)
    # Subscribed, so the client's metadata holds the topic's partitions.
    consumer = AIOKafkaConsumer(topics["output"], **kafka_options(topics.bootstrap))
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topics["output"], p)
            for p in consumer.partitions_for_topic(topics["output"]) or ()
        ]
        assert partitions
        assert sum((await consumer.end_offsets(partitions)).values()) == 0
    finally:
        await consumer.stop()
