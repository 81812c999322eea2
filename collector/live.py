"""Live output: a request's command output as fleetrun.output/1 chunks while it runs.

Only for requests with `stream_output`. The SSH session hands every received block to its
`HostStream` (one per host and attempt), which coalesces it per stream and emits a chunk when
`chunk_bytes` are buffered, on the registry's tick (every `flush_every_s`), and at the end of
the stream (`eos`). A request's streamed bytes are bounded by `budget_bytes`: past it, bytes are
counted in the chunks' `dropped_bytes` instead of sent.

Chunks are best effort and never hold a command or its result back: feeding is synchronous and
only appends to a buffer, chunks wait in a bounded queue, and one sender task hands them to the
producer (not the transactional outbox: chunks are not part of the at-most-once ledger). When
the queue is full or a send fails, the chunk is lost and counted; the result stays complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Final, Protocol, runtime_checkable

from schemas import encode
from schemas.chunks import MAX_CHUNK_BYTES, Output
from schemas.output import encode_output
from schemas.timestamps import format_timestamp

log = logging.getLogger("fleetrun.collector.live")

DEFAULT_BUDGET_BYTES: Final = 16 * 1024 * 1024
DEFAULT_FLUSH_EVERY_S: Final = 0.1
# Encoded chunks waiting for the producer; past this, new chunks are lost (and counted).
DEFAULT_QUEUE_BYTES: Final = 8 * 1024 * 1024
# A request with no running host for this long is forgotten (its budget with it).
_FORGET_AFTER_S: Final = 600.0


class ChunkProducer(Protocol):
    """What chunks are sent through: aiokafka's producer (`send` returns the ack future)."""

    async def send(self, topic: str, value: bytes, *, key: bytes) -> Awaitable[Any]: ...


@runtime_checkable
class StreamsOutput(Protocol):
    """An executor that can stream output (the SSH executor; fakes need not)."""

    live: LiveOutputs | None


class _RequestBudget:
    __slots__ = ("active", "idle_since", "left", "request_id")

    def __init__(self, request_id: str, budget_bytes: int) -> None:
        self.request_id = request_id
        self.left = budget_bytes
        self.active = 0
        self.idle_since = time.monotonic()


class _Stream:
    __slots__ = ("buf", "dropped", "first_at", "name", "start", "total")

    def __init__(self, name: str) -> None:
        self.name = name
        self.buf = bytearray()
        self.start = 0  # the stream offset of buf[0]
        self.total = 0  # bytes received, streamed or not
        self.dropped = 0
        self.first_at: datetime | None = None  # when buf's first byte came


class HostStream:
    """One host's attempt: `feed` what the command prints, `end` when the session closes."""

    __slots__ = ("_budget", "_emit", "_seq", "attempt", "ended", "host", "stderr", "stdout")

    def __init__(self, budget: _RequestBudget, host: str, attempt: int, emit: _Emit) -> None:
        self._budget = budget
        self._emit = emit
        self._seq = 0
        self.host = host
        self.attempt = attempt
        self.stdout = _Stream("stdout")
        self.stderr = _Stream("stderr")
        self.ended = False

    def feed(self, is_stderr: bool, data: bytes) -> None:
        """Take a block the command printed (synchronous: never waits)."""
        if self.ended or not data:
            return
        stream = self.stderr if is_stderr else self.stdout
        budget = self._budget
        take = min(len(data), budget.left)
        offset = stream.total
        stream.total += len(data)
        if take < len(data):
            stream.dropped += len(data) - take
        if not take:
            return
        budget.left -= take
        if not stream.buf:
            stream.start = offset
            stream.first_at = datetime.now(UTC)
        stream.buf += data[:take] if take < len(data) else data
        while len(stream.buf) >= MAX_CHUNK_BYTES:
            self._chunk(stream, MAX_CHUNK_BYTES, eos=False)

    def flush(self) -> None:
        """Send what is buffered (the registry's tick)."""
        for stream in (self.stdout, self.stderr):
            if stream.buf:
                self._chunk(stream, len(stream.buf), eos=False)

    def end(self) -> None:
        """The session closed: send the rest and an end-of-stream chunk for each stream."""
        if self.ended:
            return
        for stream in (self.stdout, self.stderr):
            while len(stream.buf) > MAX_CHUNK_BYTES:
                self._chunk(stream, MAX_CHUNK_BYTES, eos=False)
            self._chunk(stream, len(stream.buf), eos=True)
        self.ended = True
        self._budget.active -= 1
        self._budget.idle_since = time.monotonic()

    def _chunk(self, stream: _Stream, size: int, *, eos: bool) -> None:
        data = bytes(stream.buf[:size])
        del stream.buf[:size]
        text, encoding = encode_output(data)
        at = stream.first_at or datetime.now(UTC)
        chunk = Output(
            request_id=self._budget.request_id,
            host=self.host,
            attempt=self.attempt,
            stream="stderr" if stream is self.stderr else "stdout",
            sequence=self._seq,
            offset=stream.start if size else stream.total,
            data=text,
            encoding=encoding,
            dropped_bytes=stream.dropped,
            eos=eos,
            at=format_timestamp(at),
        )
        self._seq += 1
        stream.start += size  # bytes dropped later move it on: the gap a reader sees in `offset`
        stream.first_at = datetime.now(UTC) if stream.buf else None
        self._emit(chunk)


class _Emit(Protocol):
    def __call__(self, chunk: Output) -> None: ...


class LiveOutputs:
    """The collector's live-output registry: per-request budgets, the tick, the sender."""

    def __init__(
        self,
        producer: ChunkProducer,
        topic: str,
        *,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        flush_every_s: float = DEFAULT_FLUSH_EVERY_S,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        send_timeout_s: float = 10.0,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._budget_bytes = budget_bytes
        self._flush_every_s = flush_every_s
        self._queue_limit = queue_bytes
        self._send_timeout_s = send_timeout_s
        self._requests: dict[str, _RequestBudget] = {}
        self._streams: set[HostStream] = set()
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.chunks_sent = 0
        self.bytes_sent = 0
        self.chunks_lost = 0  # queue full or send failed
        self.bytes_dropped = 0  # past a request's budget (counted when its stream ends)

    def host(self, request_id: str, host: str, attempt: int) -> HostStream:
        """The stream for one host's attempt of `request_id` (its budget is the request's)."""
        budget = self._requests.get(request_id)
        if budget is None:
            budget = self._requests[request_id] = _RequestBudget(request_id, self._budget_bytes)
        budget.active += 1
        stream = HostStream(budget, host, attempt, self._enqueue)
        self._streams.add(stream)
        return stream

    def start(self) -> None:
        """Start the tick and the sender (on the running loop)."""
        self._tasks = [
            asyncio.create_task(self._tick(), name="live-output-tick"),
            asyncio.create_task(self._send_loop(), name="live-output-send"),
        ]

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Flush what is buffered, hand the queue to the producer within `timeout_s`, stop."""
        for stream in list(self._streams):
            stream.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._queue:
                    self._wake.set()
                    await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def stats(self) -> dict[str, int]:
        """Counters for the ops endpoint and the benchmark."""
        return {
            "live_chunks_sent": self.chunks_sent,
            "live_bytes_sent": self.bytes_sent,
            "live_chunks_lost": self.chunks_lost,
            "live_bytes_dropped": self.bytes_dropped,
            "live_requests": len(self._requests),
            "live_streams": len(self._streams),
        }

    def _enqueue(self, chunk: Output) -> None:
        if chunk.eos:
            self.bytes_dropped += chunk.dropped_bytes
        value = encode(chunk, validate=False)
        if self._queued_bytes + len(value) > self._queue_limit:
            self.chunks_lost += 1
            return
        self._queue.append((chunk.request_id.encode(), value))
        self._queued_bytes += len(value)
        self._wake.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every_s)
            for stream in list(self._streams):
                if stream.ended:
                    self._streams.discard(stream)
                else:
                    stream.flush()
            now = time.monotonic()
            for rid, budget in list(self._requests.items()):
                if budget.active <= 0 and now - budget.idle_since > _FORGET_AFTER_S:
                    del self._requests[rid]

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                key, value = self._queue.popleft()
                self._queued_bytes -= len(value)
                try:
                    async with asyncio.timeout(self._send_timeout_s):
                        ack = await self._producer.send(self._topic, value, key=key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # best effort: count it, never stop the collector
                    self._lost(exc)
                    continue
                ack_future = asyncio.ensure_future(ack)
                ack_future.add_done_callback(functools.partial(self._acked, size=len(value)))

    def _acked(self, fut: asyncio.Future[Any], *, size: int) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._lost(fut.exception() if not fut.cancelled() else None)
            return
        self.chunks_sent += 1
        self.bytes_sent += size

    def _lost(self, exc: BaseException | None) -> None:
        self.chunks_lost += 1
        if self.chunks_lost in (1, 10, 100, 1000) or self.chunks_lost % 10_000 == 0:
            log.warning(
                "live output chunk lost",
                extra={"topic": self._topic, "lost_total": self.chunks_lost, "error": str(exc)},
            )
