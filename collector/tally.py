"""A sharded request's results, read back from the results topic: what its shards have done.

The shards publish the request's results under its request_id, so they all land in one
partition of the results topic (the key decides), committed with their ledger marks. The
coordinator reads that partition back (read_committed, no group) from where the request
began, keeps the final status of each of the request's hosts, and so knows when every host has
its result, how many errors the shards have spent between them, and the counts of `completed`.
Only the request's own records are decoded (the key is compared first), and only the four
fields the tally needs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Final

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from collector.errors import classify
from collector.fanout import counts_as_error
from collector.ledger import Endpoint
from collector.settings import CollectorSettings
from fleetrun.runtime.kafkaauth import client_options
from schemas import ResultStatus

log = logging.getLogger("fleetrun.collector.shards")

_START_TIMEOUT_S: Final = 30.0
_MAX_RECORDS: Final = 5_000


class _Seen(msgspec.Struct, frozen=True):
    host: str
    port: int
    user: str
    status: ResultStatus


_decoder: Final = msgspec.json.Decoder(_Seen)


class ResultTally:
    """The final statuses of one request's hosts, as its results are committed."""

    def __init__(
        self,
        settings: CollectorSettings,
        topic: str,
        partitions: list[int],
        request_id: str,
        hosts: Iterable[Endpoint],
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.partitions = partitions  # of the topic (the producer's metadata knows them)
        self.request_id = request_id
        self.key = request_id.encode()
        self.expected: frozenset[Endpoint] = frozenset(hosts)
        self.statuses: dict[Endpoint, ResultStatus] = {}
        self.errors = 0
        self.stray = 0  # results of this request for hosts not in its plan (never expected)
        self._consumer: AIOKafkaConsumer | None = None
        self._tp: TopicPartition | None = None

    @property
    def complete(self) -> bool:
        return len(self.statuses) >= len(self.expected)

    async def start(self, since_ms: int | None) -> None:
        """Read from the first record written at or after `since_ms` (None: from the end)."""
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=f"fleetrun-collector-{self.settings.name}-tally",
            fetch_max_wait_ms=100,
        )
        self._consumer = consumer
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                await consumer.start()
                partitions = self.partitions
                # Where the producers put the request's results: the default partitioner's.
                partition = DefaultPartitioner()(self.key, partitions, partitions)
                tp = self._tp = TopicPartition(self.topic, partition)
                consumer.assign([tp])
                offset = None
                if since_ms is not None:
                    found = await consumer.offsets_for_times({tp: since_ms})
                    offset = found[tp].offset if found.get(tp) is not None else None
                if offset is None:
                    offset = (await consumer.end_offsets([tp]))[tp]
                consumer.seek(tp, offset)
        except (KafkaError, TimeoutError) as exc:
            await self.stop()
            raise classify(exc, f"reading back the results of {self.request_id}") from exc

    async def poll(self, timeout_ms: int) -> int:
        """Take what was committed since the last poll; how many of the hosts it finished."""
        if self._consumer is None or self._tp is None:
            return 0
        try:
            batch = await self._consumer.getmany(
                self._tp, timeout_ms=timeout_ms, max_records=_MAX_RECORDS
            )
        except KafkaError as exc:
            log.warning("reading results back failed", extra={"error": repr(exc)})
            await asyncio.sleep(timeout_ms / 1000)
            return 0
        new = 0
        for records in batch.values():
            for record in records:
                if record.key == self.key and record.value is not None:
                    new += self.take(record.value)
        return new

    def take(self, value: bytes) -> int:
        """Fold one of the request's result records in; 1 when it finished a host."""
        try:
            seen = _decoder.decode(value)
        except msgspec.DecodeError:
            return 0  # not a result fleetrun wrote; the sink dead-letters it
        endpoint = (seen.host, seen.port, seen.user)
        if endpoint not in self.expected:
            self.stray += 1
            return 0
        first = endpoint not in self.statuses
        self.statuses[endpoint] = seen.status
        if first and counts_as_error(seen.status):
            self.errors += 1
        return 1 if first else 0

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                async with asyncio.timeout(_START_TIMEOUT_S):
                    await consumer.stop()
            except Exception as exc:
                log.warning("results reader did not close cleanly", extra={"error": repr(exc)})
