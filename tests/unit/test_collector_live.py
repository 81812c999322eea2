"""Live output chunks: coalescing, the 64 KiB bound, the per-request budget, a full queue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import schemas
from collector.live import LiveOutputs
from schemas.chunks import MAX_CHUNK_BYTES, Output

RID = "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"


class RecordingProducer:
    """Implements collector.live.ChunkProducer: keeps what was sent, acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.grew = asyncio.Event()

    async def send(self, topic: str, value: bytes, *, key: bytes) -> Awaitable[Any]:
        self.sent.append((topic, key, value))
        self.grew.set()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def chunks(self) -> list[Output]:
        return [schemas.decode_output_chunk(value) for _, _, value in self.sent]


async def _drained(live: LiveOutputs, producer: RecordingProducer, count: int) -> list[Output]:
    async with asyncio.timeout(5):
        while len(producer.sent) < count:
            producer.grew.clear()
            await producer.grew.wait()
    return producer.chunks()


async def test_small_blocks_are_coalesced_and_end_with_eos() -> None:
    producer = RecordingProducer()
    live = LiveOutputs(producer, "t.output", flush_every_s=3600)  # no tick: flushes are ours
    live.start()
    try:
        stream = live.host(RID, "web01", 1)
        for n in range(100):
            stream.feed(False, b"line %d\n" % n)
        stream.feed(True, b"warn\n")
        stream.flush()
        stream.feed(False, b"last\n")
        stream.end()
        chunks = await _drained(live, producer, 4)
    finally:
        await live.stop()
    assert {topic for topic, _, _ in producer.sent} == {"t.output"}
    assert {key for _, key, _ in producer.sent} == {RID.encode()}
    assert [c.sequence for c in chunks] == [0, 1, 2, 3]
    out = [c for c in chunks if c.stream == "stdout"]
    assert out[0].data == "".join(f"line {n}\n" for n in range(100))
    assert (out[1].offset, out[1].data, out[1].eos) == (len(out[0].data), "last\n", True)
    err = [c for c in chunks if c.stream == "stderr"]
    assert [(c.data, c.eos) for c in err] == [("warn\n", False), ("", True)]


async def test_the_tick_flushes_and_big_output_is_cut_at_64_kib() -> None:
    producer = RecordingProducer()
    live = LiveOutputs(producer, "t.output", flush_every_s=0.01)
    live.start()
    try:
        stream = live.host(RID, "web01", 2)
        stream.feed(False, b"x" * (MAX_CHUNK_BYTES + 10))
        chunks = await _drained(live, producer, 2)  # the full chunk, then the tick's rest
    finally:
        await live.stop()
    assert [len(c.data_bytes) for c in chunks[:2]] == [MAX_CHUNK_BYTES, 10]
    assert chunks[1].offset == MAX_CHUNK_BYTES
    assert chunks[1].attempt == 2


async def test_past_the_budget_bytes_are_dropped_and_counted() -> None:
    producer = RecordingProducer()
    live = LiveOutputs(producer, "t.output", budget_bytes=10, flush_every_s=3600)
    live.start()
    try:
        first, second = live.host(RID, "a", 1), live.host(RID, "b", 1)
        first.feed(False, b"0123456")
        second.feed(False, b"abcdef")  # 3 fit: the budget is the request's, not the host's
        second.flush()
        second.feed(False, b"ghij")
        first.end()
        second.end()
        chunks = await _drained(live, producer, 5)
    finally:
        await live.stop()
    b_out = [c for c in chunks if c.host == "b" and c.stream == "stdout"]
    assert [(c.offset, c.data, c.dropped_bytes, c.eos) for c in b_out] == [
        (0, "abc", 3, False),
        (10, "", 7, True),
    ]
    assert live.stats()["live_bytes_dropped"] == 7


async def test_a_full_queue_loses_chunks_and_never_raises() -> None:
    producer = RecordingProducer()
    live = LiveOutputs(producer, "t.output", queue_bytes=600, flush_every_s=3600)
    # Not started: nothing drains the queue, as when Kafka is slow.
    stream = live.host(RID, "web01", 1)
    for _ in range(5):
        stream.feed(False, b"y" * 100)
        stream.flush()
    assert live.stats()["live_chunks_lost"] >= 3
    assert producer.sent == []
