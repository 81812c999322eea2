"""Submit a request and follow its status and results on Kafka until every host has answered."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from fleetrun.cli.errors import CliError, kafka_unavailable
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime.kafkaauth import client_options
from schemas import (
    Output,
    Request,
    Result,
    SchemaError,
    Status,
    decode_output_chunk,
    decode_result,
    decode_status,
    encode,
    known,
)

HostKey = tuple[str, int, str]  # (host, port, user): one name may be two endpoints

# After the completed status, how long results it counts may still take to reach this reader.
# The collector publishes completed only once every result is acknowledged, so they are in the
# log already; reading stops sooner once the reader is at the point where the log ended when
# completed was read. Only an open transaction (a stalled collector's) can hold them back longer.
CATCH_UP_S: Final = 10.0


@dataclass(slots=True)
class Progress:
    """What is known so far about one request."""

    request_id: str
    total: int | None = None  # from the accepted (or completed) status
    results: dict[HostKey, Result] = field(default_factory=dict)  # final result per host
    accepted: bool = False
    completed: Status | None = None
    rejected: Status | None = None

    @property
    def expected(self) -> int | None:
        """How many results to expect: the completed counts, else the accepted total."""
        counts = None if self.completed is None else known(self.completed.counts)
        return counts.total if counts is not None else self.total

    @property
    def missing(self) -> int:
        """Results the completed status counts that were not read (0 before completed)."""
        if self.completed is None or self.expected is None:
            return 0
        return max(0, self.expected - len(self.results))

    @property
    def done(self) -> bool:
        """Nothing more to wait for: rejected, or completed with every result it counts."""
        if self.rejected is not None:
            return True
        return self.completed is not None and self.missing == 0

    def add(self, result: Result) -> None:
        """Keep a host's final result. A host that answers again (a later attempt, after a
        collector handed its partition over) replaces its earlier answer. Keyed by endpoint,
        not name: `h:22` and `h:2200` are two hosts."""
        host = (result.host, result.port, result.user)
        old = self.results.get(host)
        if old is None or result.attempt >= old.attempt:
            self.results[host] = result

    def apply(self, status: Status) -> None:
        """Fold in a status record of this request."""
        if status.state == "accepted":
            self.accepted = True
            self.total = known(status.targets_total)
        elif status.state == "completed":
            self.completed = status
            self.total = known(status.targets_total)
        else:
            self.rejected = status


def _unavailable(settings: CliSettings, exc: BaseException) -> CliError:
    return kafka_unavailable(settings, exc)


def _producer(settings: CliSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(settings.kafka_timeout_s * 1000),
    )


class Follower:
    """Submits a request and reads the status and result topics from before it, filtered to it."""

    def __init__(self, settings: CliSettings) -> None:
        self.settings = settings
        self.producer = _producer(settings)
        self.consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=int(settings.kafka_timeout_s * 1000),
            max_partition_fetch_bytes=16 * 1024 * 1024,
            # Collectors publish in Kafka transactions: an aborted attempt's results are never
            # shown, and a result shows only once its transaction is committed.
            isolation_level="read_committed",
        )
        self._results: list[TopicPartition] = []
        # Set before start() to read live output chunks too (`run --follow`).
        self.on_output: Callable[[Output], None] | None = None

    async def start(self) -> None:
        """Connect and pin every partition's position at its end, before the request exists."""
        s = self.settings
        try:
            async with asyncio.timeout(s.kafka_timeout_s):
                await self.producer.start()
                await self.consumer.start()
                tps = []
                topics = [s.topic_prefix + "status", s.topic_prefix + "results"]
                if self.on_output is not None:
                    topics.append(s.topic_prefix + "output")
                for topic in topics:
                    # The producer's metadata call is the public way to learn a topic's
                    # partitions; it raises when the topic does not exist.
                    try:
                        parts = await self.producer.partitions_for(topic)
                    except KafkaTimeoutError:
                        parts = set()
                    if not parts:
                        raise CliError(
                            f"topic {topic} does not exist on {s.kafka_bootstrap}; "
                            "check FLEETRUN_TOPIC_PREFIX or create the topics (`make stack-up`)"
                        )
                    tps += [TopicPartition(topic, p) for p in parts]
                # Caught up means these are read to where they ended at `completed`.
                self._results = [tp for tp in tps if tp.topic != s.topic_prefix + "status"]
                self.consumer.assign(tps)
                await self.consumer.seek_to_end(*tps)
                for tp in tps:
                    await self.consumer.position(tp)
        except (KafkaError, TimeoutError, OSError) as exc:
            await self.stop()
            raise _unavailable(s, exc) from None

    async def stop(self) -> None:
        with contextlib.suppress(KafkaError, OSError):
            await self.consumer.stop()
        with contextlib.suppress(KafkaError, OSError):
            await self.producer.stop()

    async def submit(self, request: Request) -> None:
        """Produce the request; return once every in-sync replica has it."""
        await _send(self.settings, self.producer, request)

    async def follow(
        self,
        progress: Progress,
        on_update: Callable[[Progress, Result | None], None],
        *,
        deadline: Callable[[Progress], float],
        catch_up_s: float = CATCH_UP_S,
    ) -> Progress:
        """Fold records for `progress.request_id` into it until it is done, or its completed
        status has been read with everything published before it (at most `catch_up_s` more),
        or the monotonic `deadline(progress)` passes (it may move as the request is accepted).
        """
        key = progress.request_id.encode()
        results_topic = self.settings.topic_prefix + "results"
        output_topic = self.settings.topic_prefix + "output"
        catch_up: _CatchUp | None = None
        while not progress.done:
            now = time.monotonic()
            if progress.completed is not None:
                if catch_up is None:
                    catch_up = await self._catch_up_point(now + catch_up_s)
                if now >= catch_up.until or await self._caught_up(catch_up):
                    break
            until = deadline(progress)
            if catch_up is not None:
                until = min(until, catch_up.until)
            if now >= until:
                break
            wait_ms = max(1, min(200, int((until - now) * 1000)))
            batch = await self._getmany(wait_ms)
            for tp, records in batch.items():
                for rec in records:
                    if rec.key != key or rec.value is None:
                        continue
                    try:
                        if tp.topic == results_topic:
                            result = decode_result(rec.value)
                            progress.add(result)
                            on_update(progress, result)
                        elif tp.topic == output_topic:
                            if self.on_output is not None:
                                self.on_output(decode_output_chunk(rec.value))
                        else:
                            progress.apply(decode_status(rec.value))
                            on_update(progress, None)
                    except SchemaError:
                        continue  # the sink dead-letters bad records; the CLI just reads on
        return progress

    async def _getmany(self, wait_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        try:
            async with asyncio.timeout(self.settings.kafka_timeout_s + wait_ms / 1000):
                batch: dict[TopicPartition, list[ConsumerRecord]] = await self.consumer.getmany(
                    timeout_ms=wait_ms, max_records=1000
                )
                return batch
        except (KafkaError, TimeoutError, OSError) as exc:
            raise _unavailable(self.settings, exc) from None

    async def _catch_up_point(self, until: float) -> _CatchUp:
        """Where the results partitions end now: every result the collector counted in its
        completed status was acknowledged before that status, so it lies before this point."""
        try:
            async with asyncio.timeout(max(0.0, until - time.monotonic())):
                ends = await self.consumer.end_offsets(self._results)
        except (KafkaError, TimeoutError, OSError):
            ends = None  # then only the time bound applies
        return _CatchUp(ends, until)

    async def _caught_up(self, catch_up: _CatchUp) -> bool:
        if catch_up.ends is None:
            return False
        try:
            async with asyncio.timeout(max(0.0, catch_up.until - time.monotonic())):
                for tp, end in catch_up.ends.items():
                    if await self.consumer.position(tp) < end:
                        return False
        except (KafkaError, TimeoutError, OSError):
            return False
        # A read_committed end offset stops at the first open transaction: committed results
        # written after it are only readable once it ends, so keep reading until the time bound.
        for tp in catch_up.ends:
            stable, high = self.consumer.last_stable_offset(tp), self.consumer.highwater(tp)
            if stable is not None and high is not None and 0 <= stable < high:
                return False
        return True


@dataclass(frozen=True, slots=True)
class _CatchUp:
    ends: dict[TopicPartition, int] | None  # results partitions' end offsets at completed
    until: float  # monotonic time after which missing results are not waited for


async def _send(settings: CliSettings, producer: AIOKafkaProducer, request: Request) -> None:
    try:
        async with asyncio.timeout(settings.kafka_timeout_s):
            await producer.send_and_wait(
                settings.topic_prefix + "requests",
                encode(request),
                key=request.request_id.encode(),
            )
    except (KafkaError, TimeoutError, OSError) as exc:
        raise _unavailable(settings, exc) from None


async def submit(settings: CliSettings, request: Request) -> None:
    """Produce the request and wait until Kafka has it on every in-sync replica."""
    producer = _producer(settings)
    try:
        try:
            async with asyncio.timeout(settings.kafka_timeout_s):
                await producer.start()
        except (KafkaError, TimeoutError, OSError) as exc:
            raise _unavailable(settings, exc) from None
        await _send(settings, producer, request)
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await producer.stop()
