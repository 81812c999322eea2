"""Dead letters from the collector: a consumed record it cannot use, kept byte for byte."""

from __future__ import annotations

import msgspec

import schemas
from collector.errors import RecordTooLarge
from collector.kafka import Publisher
from schemas import ConsumedRecord, DeadLetter, ErrorInfo, limits


async def publish_dead_letter(
    publisher: Publisher,
    topic: str,
    record: ConsumedRecord,
    error: ErrorInfo,
    *,
    instance: str,
    request_id: str | None,
) -> None:
    """Publish the dead letter of `record` to `topic` (keyed like the original); returns once
    Kafka has it. Raises CollectorError when Kafka refuses it for good."""
    letter = DeadLetter.of(
        record, error, stage="collector", instance=instance, request_id=request_id
    )
    try:
        await publisher.publish(topic, record.key, schemas.encode(letter))
    except RecordTooLarge:
        # base64 makes a record near the topic's size limit too large for the DLQ: keep the
        # error and where the original is, which the source topic still holds.
        size = len(record.value or b"")
        note = f" (raw value of {size:,} bytes omitted: too large for the dead-letter topic)"
        smaller = msgspec.structs.replace(
            letter,
            value=None,
            error=ErrorInfo(
                type=error.type,
                message=error.message[: limits.MAX_ERROR_MESSAGE_CHARS - len(note)] + note,
            ),
        )
        await publisher.publish(topic, record.key, schemas.encode(smaller))
