"""Live progress for open request pages: ONE Kafka consumer per console process, fanned out.

The feed reads the status, result and output topics (read_committed, from their end) and hands each
record of a request someone is watching to the Hub, which copies it into one bounded queue per
open page. A browser that reads slower than its request produces does not grow memory: when
its queue is full it is emptied and told to reload (the page then reads PostgreSQL again).

Output chunks (fleetrun.output/1, published for requests with stream_output) become `output`
events: the chunk's text with control characters escaped, as the CLI's --follow shows it. Chunks
are cut where the collector's buffer was, sometimes inside a UTF-8 character: each stream keeps
an incremental decoder, so a character split between two chunks shows whole, not as two U+FFFD.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from fleetrun.cli.grouping import reason_of
from fleetrun.cli.safetext import shown
from fleetrun.runtime.backoff import backoff_delay
from fleetrun.runtime.outage import Outages
from schemas import SchemaError, decode_output_chunk, decode_result, decode_status, known

log = logging.getLogger("fleetrun.web")

POLL_MS: Final = 250
# Latest statuses kept for pages that open late: a few hundred bytes each.
KEEP_STATUSES: Final = 10_000
# Streams whose unfinished UTF-8 character is remembered (at most 3 bytes each, plus the key).
KEEP_DECODERS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: its name and a JSON document."""

    kind: str  # "status" | "result" | "output" | "reload"
    data: dict[str, Any]

    def encode(self) -> bytes:
        """The event in the text/event-stream format."""
        return b"event: " + self.kind.encode() + b"\ndata: " + orjson.dumps(self.data) + b"\n\n"


RELOAD: Final = Event("reload", {"why": "too many updates for this page; reload it"})


@dataclass(eq=False, slots=True)
class Subscriber:
    """One open page's queue of events."""

    request_id: str
    queue: asyncio.Queue[Event]
    overflowed: bool = False


@dataclass(slots=True)
class Hub:
    """Request id → the subscribers watching it; every queue is bounded by `queue_size`."""

    queue_size: int
    on_overflow: Callable[[], None] = lambda: None
    keep_statuses: int = KEEP_STATUSES
    _watching: dict[str, set[Subscriber]] = field(default_factory=dict)
    # The latest status of recent requests, watched or not: a page opened (or reopened after
    # its cancel button) a moment before its request's status came starts from it.
    _latest: OrderedDict[str, Event] = field(default_factory=OrderedDict)

    def subscribe(self, request_id: str) -> Subscriber:
        sub = Subscriber(request_id, asyncio.Queue(self.queue_size))
        latest = self._latest.get(request_id)
        if latest is not None:
            sub.queue.put_nowait(latest)
        self._watching.setdefault(request_id, set()).add(sub)
        return sub

    def status(self, request_id: str, event: Event) -> None:
        """Remember `event` as the request's latest status (bounded), and publish it."""
        self._latest[request_id] = event
        self._latest.move_to_end(request_id)
        while len(self._latest) > self.keep_statuses:
            self._latest.popitem(last=False)
        self.publish(request_id, event)

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._watching.get(sub.request_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._watching[sub.request_id]

    def watched(self, request_id: str) -> bool:
        return request_id in self._watching

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._watching.values())

    def publish(self, request_id: str, event: Event) -> None:
        """Give `event` to every page watching `request_id`; a full page is told to reload."""
        for sub in self._watching.get(request_id, ()):
            if sub.overflowed:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                # What it missed cannot be replayed from here: drop what it holds, keep one
                # slot for the reload notice, stop feeding it.
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(RELOAD)
                sub.overflowed = True
                self.on_overflow()


def status_event(value: bytes) -> Event:
    """A status record as the page needs it: state, total, counts."""
    status = decode_status(value)
    counts = known(status.counts)
    return Event(
        "status",
        {
            "state": status.state,
            "targets_total": known(status.targets_total),
            "counts": None if counts is None else counts.as_dict(),
            "reason": known(status.reason),
            "cancelled_by": known(status.cancelled_by),
        },
    )


def result_event(value: bytes) -> Event:
    """A result record as the page needs it: host, status, duration, why not ok."""
    result = decode_result(value)
    return Event(
        "result",
        {
            "host": result.host,
            "status": result.status,
            "duration_ms": result.duration_ms,
            "reason": reason_of(result),
        },
    )


_StreamKey = tuple[str, str, int, str]  # request_id, host, attempt, stream


class OutputEvents:
    """Output chunks as the page shows them: host, stream, escaped text, what was dropped.

    A stream's decoder carries an unfinished character from one chunk to the next; bytes that
    are not UTF-8 show as U+FFFD. Bytes the live budget dropped between two chunks (an offset
    jump) end the unfinished character there. At most KEEP_DECODERS streams are remembered
    (the oldest forgotten first: its next chunk starts afresh)."""

    def __init__(self, keep: int = KEEP_DECODERS) -> None:
        self.keep = keep
        self._streams: OrderedDict[_StreamKey, tuple[codecs.IncrementalDecoder, int]]
        self._streams = OrderedDict()

    def __call__(self, value: bytes) -> Event:
        chunk = decode_output_chunk(value)
        key = (chunk.request_id, chunk.host, chunk.attempt, chunk.stream)
        data = chunk.data_bytes
        decoder, expected = self._streams.pop(key, (None, chunk.offset))
        text = ""
        if decoder is None or chunk.offset != expected:
            if decoder is not None:
                text = decoder.decode(b"", final=True)  # a cut character: U+FFFD
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text += decoder.decode(data, final=chunk.eos)
        if not chunk.eos:
            self._streams[key] = (decoder, chunk.offset + len(data))
            while len(self._streams) > self.keep:
                self._streams.popitem(last=False)
        return Event(
            "output",
            {
                "host": chunk.host,
                "stream": chunk.stream,
                "text": shown(text),
                "eos": chunk.eos,
                "dropped_bytes": chunk.dropped_bytes,
            },
        )


class LiveFeed:
    """The console's one consumer: every partition of its topics (no group), from the end."""

    def __init__(
        self,
        kafka: Mapping[str, Any],
        topic_prefix: str,
        hub: Hub,
        outages: Outages,
        *,
        timeout_s: float,
        on_record: Callable[[str], None] = lambda _topic: None,
    ) -> None:
        self.hub = hub
        self.outages = outages
        self.timeout_s = timeout_s
        self.on_record = on_record
        self.kafka = kafka  # client_options(settings): bootstrap and security
        self.decoders: dict[str, Callable[[bytes], Event]] = {
            topic_prefix + "status": status_event,
            topic_prefix + "results": result_event,
            topic_prefix + "output": OutputEvents(),
        }
        self.running = False
        self.started = asyncio.Event()  # set once the first subscription is in place

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self.kafka,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=int(self.timeout_s * 1000),
            # Collectors publish in transactions: an aborted attempt's result is never shown.
            isolation_level="read_committed",
            auto_offset_reset="latest",
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; reconnect with backoff when Kafka goes away."""
        attempt = 0
        while not stop.is_set():
            consumer = self._consumer()
            try:
                async with asyncio.timeout(self.timeout_s):
                    await consumer.start()
                # Without a group the subscription takes every partition, and a consumer
                # without committed offsets starts at the end (auto_offset_reset="latest").
                consumer.subscribe(list(self.decoders))
                self.running = True
                self.started.set()
                attempt = 0
                self.outages.ok("kafka")
                while not stop.is_set():
                    async with asyncio.timeout(self.timeout_s + POLL_MS / 1000):
                        batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=2000)
                    self._dispatch(batch)
            except (KafkaError, TimeoutError, OSError) as exc:
                self.running = False
                attempt += 1
                self.outages.failed("kafka", f"{type(exc).__name__}: {exc}", what="feed_retries")
                delay = backoff_delay(attempt, 0.5, 10.0, random.random())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
            finally:
                self.running = False
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    async with asyncio.timeout(self.timeout_s):
                        await consumer.stop()

    def _dispatch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            decode = self.decoders[tp.topic]
            for record in records:
                self.on_record(tp.topic)
                if record.key is None or record.value is None:
                    continue
                request_id = record.key.decode("utf-8", errors="replace")
                is_status = decode is status_event  # few and small: every one is kept
                if not is_status and not self.hub.watched(request_id):
                    continue  # results are decoded only for requests someone looks at
                try:
                    event = decode(record.value)
                except SchemaError:
                    continue  # the sink dead-letters bad records; pages just read on
                if is_status:
                    self.hub.status(request_id, event)
                else:
                    self.hub.publish(request_id, event)
