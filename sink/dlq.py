"""Publishes dead letters to <prefix>dlq: idempotent producer, acks=all, a deadline on each."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from fleetrun.runtime.kafkaauth import client_options
from schemas import DeadLetter, ErrorInfo, encode
from sink.settings import SinkSettings

log = logging.getLogger("fleetrun.sink.dlq")


class DeadLetterSink(Protocol):
    """Where a flush sends its dead letters (DeadLetterPublisher; a fake in unit tests)."""

    async def publish(self, dead: list[DeadLetter]) -> None: ...


class DeadLetterPublisher:
    """The sink's dead-letter producer."""

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self.topic = settings.dlq_topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect; raises (KafkaConnectionError, TimeoutError) when Kafka is away."""
        s = self.settings
        producer = AIOKafkaProducer(
            **client_options(s),
            client_id=f"fleetrun-sink-dlq-{s.name}",
            acks="all",
            enable_idempotence=True,
            max_request_size=s.dlq_max_request_bytes,
            request_timeout_ms=int(s.kafka_timeout_s * 1000),
        )
        try:
            async with asyncio.timeout(s.kafka_timeout_s):
                await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self, timeout_s: float) -> None:
        """Flush and close within `timeout_s`."""
        if self._producer is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._producer.stop()
        except TimeoutError:
            log.warning("dead-letter producer did not close in time")
        self._producer = None

    async def publish(self, dead: list[DeadLetter]) -> None:
        """Publish every dead letter and wait for Kafka's acknowledgements (one deadline)."""
        if self._producer is None:
            raise RuntimeError("DeadLetterPublisher.start() first")
        async with asyncio.timeout(self.settings.kafka_timeout_s):
            sent = [await self._send(d) for d in dead]
            await asyncio.gather(*sent)

    async def _send(self, d: DeadLetter) -> asyncio.Future[object]:
        assert self._producer is not None
        try:
            fut: asyncio.Future[object] = await self._producer.send(
                self.topic, value=encode(d), key=d.key
            )
        except MessageSizeTooLargeError:
            # The dead_letters table keeps the bytes; the topic gets the record without them
            # rather than nothing at all.
            size = len(d.value or b"")
            note = (
                f"[value of {size:,} bytes left out: larger than the dead-letter topic takes; "
                "the dead_letters table has it] "
            )
            slim = msgspec.structs.replace(
                d, value=None, error=ErrorInfo.bounded(d.error.type, note + d.error.message)
            )
            fut = await self._producer.send(self.topic, value=encode(slim), key=d.key)
        return fut
