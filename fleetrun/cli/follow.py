"""Submit a request and follow its status and results on Kafka until every host has answered."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from fleetrun.cli.errors import EXIT_UNAVAILABLE, CliError, local_stack_hint
from fleetrun.cli.settings import CliSettings
from schemas import (
    Request,
    Result,
    SchemaError,
    Status,
    decode_result,
    decode_status,
    encode,
    known,
)


@dataclass(slots=True)
class Progress:
    """What is known so far about one request."""

    request_id: str
    total: int | None = None  # from the accepted (or completed) status
    results: dict[str, Result] = field(default_factory=dict)  # host -> final result
    completed: Status | None = None
    rejected: Status | None = None

    @property
    def done(self) -> bool:
        if self.rejected is not None:
            return True
        return (
            self.completed is not None
            and self.total is not None
            and len(self.results) >= self.total
        )


def _unavailable(settings: CliSettings, exc: BaseException) -> CliError:
    return CliError(
        f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc or type(exc).__name__}); "
        "is it running? (`make stack-up`, or set FLEETRUN_KAFKA_BOOTSTRAP)" + local_stack_hint(),
        EXIT_UNAVAILABLE,
    )


def _producer(settings: CliSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
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
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=int(settings.kafka_timeout_s * 1000),
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )

    async def start(self) -> None:
        """Connect and pin every partition's position at its end, before the request exists."""
        s = self.settings
        try:
            async with asyncio.timeout(s.kafka_timeout_s):
                await self.producer.start()
                await self.consumer.start()
                tps = []
                for topic in (s.topic_prefix + "status", s.topic_prefix + "results"):
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
        deadline: float | None,
    ) -> Progress:
        """Fold records for `progress.request_id` into it until done or the monotonic deadline."""
        key = progress.request_id.encode()
        results_topic = self.settings.topic_prefix + "results"
        while not progress.done:
            if deadline is not None and time.monotonic() >= deadline:
                break
            batch = await self.consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.key != key or rec.value is None:
                        continue
                    try:
                        if tp.topic == results_topic:
                            result = decode_result(rec.value)
                            _keep(progress, result)
                            on_update(progress, result)
                        else:
                            _apply_status(progress, decode_status(rec.value))
                            on_update(progress, None)
                    except SchemaError:
                        continue  # the sink dead-letters bad records; the CLI just reads on
        return progress


def _keep(progress: Progress, result: Result) -> None:
    # In the abnormal case of a redelivered request a host can answer twice; keep the later attempt.
    old = progress.results.get(result.host)
    if old is None or result.attempt >= old.attempt:
        progress.results[result.host] = result


def _apply_status(progress: Progress, status: Status) -> None:
    if status.state == "accepted":
        progress.total = known(status.targets_total)
    elif status.state == "completed":
        progress.completed = status
        progress.total = known(status.targets_total)
    else:
        progress.rejected = status


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
