"""`fleetrun tail REQUEST_ID`: follow a running request's live output from anywhere.

Everything about one request is keyed by its id, so it lies in one partition of each topic: the
tail reads that partition of the output topic from the oldest chunk kept (an hour) and of the
status topic, prints `host: line`, and stops once the request has completed and the output
written before that has been read. Only requests submitted with stream_output
(`run --follow`) have chunks; the others show their status only.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from rich.console import Console

from fleetrun.cli.errors import (
    EXIT_HOSTS_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    CliError,
)
from fleetrun.cli.follow import CATCH_UP_S
from fleetrun.cli.live import LinePrinter, write_to_std
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime.kafkaauth import client_options
from schemas import SchemaError, Status, decode_output_chunk, decode_status, known

_POLL_MS: Final = 200


def partition_of(request_id: str, partitions: list[int]) -> int:
    """The partition the producers' default partitioner puts `request_id`'s records in."""
    key = request_id.encode()
    chosen: int = DefaultPartitioner()(key, sorted(partitions), sorted(partitions))
    return chosen


async def _partitions(settings: CliSettings, topic: str) -> set[int]:
    # The producer's metadata call is the public way to learn a topic's partitions.
    producer = AIOKafkaProducer(**client_options(settings))
    await producer.start()
    try:
        try:
            parts: set[int] = await producer.partitions_for(topic)
        except KafkaTimeoutError:
            return set()
        return parts
    finally:
        await producer.stop()


async def tail(settings: CliSettings, request_id: str, console: Console) -> int:
    """Print the request's live output until it completes; its exit code as `run --wait`'s."""
    printer = LinePrinter(write_to_std, colour=sys.stdout.isatty() and not console.no_color)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=int(settings.kafka_timeout_s * 1000),
        isolation_level="read_committed",
    )
    output = settings.topic_prefix + "output"
    status = settings.topic_prefix + "status"
    final: Status | None = None
    try:
        async with asyncio.timeout(settings.kafka_timeout_s):
            await consumer.start()
            tps = []
            for topic in (output, status):
                parts = await _partitions(settings, topic)
                if not parts:
                    raise CliError(f"topic {topic} does not exist on {settings.kafka_bootstrap}")
                tps.append(TopicPartition(topic, partition_of(request_id, list(parts))))
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        console.print(f"following request {request_id} (Ctrl-C stops)", style="dim")
        key = request_id.encode()
        until: float | None = None
        ends: dict[TopicPartition, int] = {}
        while True:
            if final is not None:
                if until is None:
                    until = time.monotonic() + CATCH_UP_S
                    ends = await consumer.end_offsets([tps[0]])
                if time.monotonic() >= until or all(
                    [await consumer.position(tp) >= end for tp, end in ends.items()]
                ):
                    break
            async with asyncio.timeout(settings.kafka_timeout_s + _POLL_MS / 1000):
                batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=2000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.key != key or rec.value is None:
                        continue
                    with contextlib.suppress(SchemaError):
                        if tp.topic == output:
                            printer.add(decode_output_chunk(rec.value))
                        else:
                            record = decode_status(rec.value)
                            if record.state in ("completed", "rejected"):
                                final = record
    except (KafkaError, TimeoutError, OSError) as exc:
        raise CliError(
            f"Kafka at {settings.kafka_bootstrap}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        printer.flush()
        with contextlib.suppress(KafkaError, OSError):
            await consumer.stop()
    note = printer.dropped_note()
    if note:
        console.print(note, style="yellow", highlight=False)
    assert final is not None  # the loop ends only once the request has
    return _report(console, final)


def _report(console: Console, final: Status) -> int:
    if final.state == "rejected":
        console.print(f"rejected: {known(final.reason)}", style="red")
        return EXIT_REJECTED
    counts = known(final.counts)
    if counts is None:
        return EXIT_OK
    shown = " ".join(f"{name}={n}" for name, n in counts.as_dict().items() if n)
    console.print(f"completed: {shown}", highlight=False)
    return EXIT_OK if counts.ok == counts.total else EXIT_HOSTS_FAILED
