"""`fleetrun cancel REQUEST_ID`: produce a fleetrun.cancel/1 record, then say what it did.

First the request's recent history is read back from Kafka (the last LOOKBACK_S): its status
partition (a request's statuses are keyed by its id, so they share one partition) and its
requests partition. A request that has finished is left alone: nothing is produced, and the
CLI says so. Otherwise the cancel is produced and the status partition followed, for a bounded
time, until the collector answers: `completed` with `cancelled_by` (hosts skipped, commands
killed: the results partition is read along to count those), `rejected` with `cancelled_by`
(the cancel came first), or `completed` without it (the request finished first). With no trace
of the request at all, the answer is "unknown" after UNKNOWN_WAIT_S: the cancel still stands,
so a request with that id that arrives while collectors count it is rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Final, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from rich.console import Console

from collector.outcome import KILLED
from fleetrun.cli.errors import (
    EXIT_ALREADY_FINISHED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_WAIT_TIMEOUT,
    CliError,
    kafka_unavailable,
)
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime.kafkaauth import client_options
from schemas import (
    Cancel,
    Result,
    SchemaError,
    Status,
    StatusCounts,
    decode_result,
    decode_status,
    encode,
    known,
    limits,
)

# How far back the request's statuses and record are looked for: the collectors' default
# cancel_lookback_s, the time a cancel counts for them.
LOOKBACK_S: Final = 3600.0
DEFAULT_WAIT_S: Final = 30.0
# With no trace of the request: long enough for a request submitted a moment ago to be
# accepted (or rejected for this cancel), short enough not to keep a typo waiting.
UNKNOWN_WAIT_S: Final = 5.0
# After the completed status: results of killed hosts were acknowledged before it, so they are
# in the log already; this bounds reading up to where the log ended at that point.
CATCH_UP_S: Final = 5.0
_POLL_MS: Final = 200

Known = Literal["unknown", "queued", "running", "finished"]


def build_cancel(request_id: str, principal: str, reason: str | None) -> Cancel:
    """A valid cancel, or a CliError naming the option that is wrong."""
    if reason is not None and len(reason) > limits.MAX_CANCEL_REASON_CHARS:
        raise CliError(
            f"--reason is {len(reason):,} characters long; "
            f"the limit is {limits.MAX_CANCEL_REASON_CHARS:,}"
        )
    try:
        cancel = Cancel.new(request_id, principal=principal, reason=reason)
        encode(cancel)  # proves every bound
    except SchemaError as exc:
        option = "--reason" if exc.path == "reason" else exc.path or "the cancel"
        raise CliError(f"{option}: {exc.problem}") from None
    return cancel


@dataclass(slots=True)
class Story:
    """What has been read about one request, before and after the cancel."""

    request_id: str
    requested: bool = False  # its request record is on the requests topic
    accepted: bool = False
    final: Status | None = None  # its rejected or completed status
    killed: int = 0  # results of hosts whose running command a cancel killed

    @property
    def known(self) -> Known:
        if self.final is not None:
            return "finished"
        if self.accepted:
            return "running"
        return "queued" if self.requested else "unknown"

    def apply(self, status: Status) -> None:
        """Fold in one status of the request."""
        if status.state == "accepted":
            self.accepted = True
        elif self.final is None:
            self.final = status

    def count(self, result: Result) -> None:
        """Count a host whose running command was killed (skipped hosts are in the counts)."""
        if result.error is not None and result.error.type == KILLED:
            self.killed += 1


def finished_message(status: Status) -> str:
    """What to say of a request whose final status came before this cancel."""
    if status.state == "rejected":
        what = f"rejected at {status.at} ({known(status.reason)})"
    else:
        counts = known(status.counts)
        what = f"completed at {status.at} ({_counts_text(counts)})" if counts else "completed"
    by = known(status.cancelled_by)
    if by is not None:
        return f"request already cancelled by {by}: {what}; nothing to cancel"
    return f"request already finished: {what}; nothing to cancel"


def verdict(story: Story, *, waited_s: float) -> tuple[int, str]:
    """The exit code and the line to print once following has ended."""
    rid = story.request_id
    final = story.final
    if final is not None:
        by = known(final.cancelled_by)
        if by is None:
            return EXIT_ALREADY_FINISHED, finished_message(final)
        why = known(final.cancel_reason)
        said = f"request cancelled by {by}" + (f": {why}" if why else "")
        if final.state == "rejected":
            return EXIT_OK, f"cancelled before it ran: rejected ({said})"
        counts = known(final.counts) or StatusCounts.of([])
        others = counts.total - counts.skipped - story.killed
        return EXIT_OK, (
            f"cancelled: {counts.skipped} hosts skipped, {story.killed} killed "
            f"({said}; {max(0, others)} had finished)"
        )
    if story.known == "unknown":
        return EXIT_NOT_FOUND, (
            f"unknown request (nothing to cancel): no request or status with id {rid} on Kafka "
            f"in the last {LOOKBACK_S / 3600:g} h. The cancel stays on record: collectors reject "
            "this id if it arrives while they still count the cancel."
        )
    if story.known == "queued":
        return EXIT_WAIT_TIMEOUT, (
            f"cancel sent; no collector has taken the request within {waited_s:g}s: it is "
            f"rejected when one does (fleetrun status {rid})"
        )
    return EXIT_WAIT_TIMEOUT, (
        f"cancel sent; the collector running the request did not answer within {waited_s:g}s "
        f"(fleetrun status {rid})"
    )


def _counts_text(counts: StatusCounts) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.as_dict().items() if n) or "no hosts"


def partition_of(key: bytes, partitions: set[int]) -> int:
    """The partition Kafka's default partitioner (murmur2, every client's) gives `key`."""
    ordered = sorted(partitions)
    partition: int = DefaultPartitioner()(key, ordered, ordered)
    return partition


@dataclass(frozen=True, slots=True)
class _Partitions:
    status: TopicPartition
    results: TopicPartition
    requests: TopicPartition


class CancelReader:
    """Reads one request's partitions of the status, results and requests topics, and sends its
    cancel."""

    def __init__(self, settings: CliSettings, request_id: str) -> None:
        self.settings = settings
        self.key = request_id.encode()
        timeout_ms = int(settings.kafka_timeout_s * 1000)
        self.producer = AIOKafkaProducer(
            **client_options(settings),
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=timeout_ms,
        )
        self.consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=timeout_ms,
            # Collectors publish in transactions: only committed statuses and results count.
            isolation_level="read_committed",
        )
        self._parts: _Partitions | None = None
        self._ends: dict[TopicPartition, int] = {}

    @property
    def parts(self) -> _Partitions:
        """The request's partitions (once started)."""
        if self._parts is None:
            raise RuntimeError("CancelReader.start() first")
        return self._parts

    def _topic(self, name: str) -> str:
        return self.settings.topic_prefix + name

    async def start(self, lookback_s: float = LOOKBACK_S) -> None:
        """Connect; place the status and requests partitions `lookback_s` back, the results
        partition at its end."""
        s = self.settings
        try:
            async with asyncio.timeout(s.kafka_timeout_s):
                await self.producer.start()
                await self.consumer.start()
                parts = {n: await self._partitions(n) for n in ("status", "results", "requests")}
                await self._partitions("cancels")
                status, results, requests = (
                    TopicPartition(self._topic(n), partition_of(self.key, parts[n]))
                    for n in ("status", "results", "requests")
                )
                self._parts = _Partitions(status, results, requests)
                tps = [status, results, requests]
                self.consumer.assign(tps)
                self._ends = await self.consumer.end_offsets(tps)
                since = int((time.time() - lookback_s) * 1000)
                found = await self.consumer.offsets_for_times({status: since, requests: since})
                for tp in tps:
                    hit = found.get(tp)
                    self.consumer.seek(tp, self._ends[tp] if hit is None else hit.offset)
        except (KafkaError, TimeoutError, OSError) as exc:
            await self.stop()
            raise kafka_unavailable(s, exc) from None
        except CliError:
            await self.stop()
            raise

    async def _partitions(self, name: str) -> set[int]:
        topic = self._topic(name)
        try:
            parts: set[int] = await self.producer.partitions_for(topic)
        except KafkaTimeoutError:
            parts = set()
        if not parts:
            raise CliError(
                f"topic {topic} does not exist on {self.settings.kafka_bootstrap}; check "
                "FLEETRUN_CLI_TOPIC_PREFIX or create the topics (`make stack-up`)"
            )
        return parts

    async def history(self, story: Story) -> None:
        """Read the status and requests partitions up to where they ended at `start`."""
        remaining = {self.parts.status, self.parts.requests}
        try:
            async with asyncio.timeout(self.settings.kafka_timeout_s):
                while remaining:
                    await self._read(story, *remaining)
                    for tp in list(remaining):
                        if await self.consumer.position(tp) >= self._ends[tp]:
                            remaining.discard(tp)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise kafka_unavailable(self.settings, exc) from None
        self.consumer.pause(self.parts.requests)  # the record was looked for; only answers now

    async def send(self, cancel: Cancel) -> None:
        """Produce the cancel; return once every in-sync replica has it."""
        try:
            async with asyncio.timeout(self.settings.kafka_timeout_s):
                await self.producer.send_and_wait(
                    self._topic("cancels"), encode(cancel), key=self.key
                )
        except (KafkaError, TimeoutError, OSError) as exc:
            raise kafka_unavailable(self.settings, exc) from None

    async def follow(self, story: Story, until: float) -> None:
        """Read the request's statuses and results until its final status (and the results
        published before it), or the monotonic time `until`."""
        results_tp = self.parts.results
        results_end: int | None = None
        try:
            while True:
                now = time.monotonic()
                if story.final is not None:
                    if results_end is None:
                        until = min(until, now + CATCH_UP_S)
                        async with asyncio.timeout(self.settings.kafka_timeout_s):
                            ends = await self.consumer.end_offsets([results_tp])
                        results_end = ends[results_tp]
                    if await self.consumer.position(results_tp) >= results_end:
                        return
                if now >= until:
                    return
                wait_ms = max(1, min(_POLL_MS, int((until - now) * 1000)))
                async with asyncio.timeout(self.settings.kafka_timeout_s + wait_ms / 1000):
                    await self._read(story, self.parts.status, results_tp, wait_ms=wait_ms)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise kafka_unavailable(self.settings, exc) from None

    async def _read(self, story: Story, *tps: TopicPartition, wait_ms: int = _POLL_MS) -> None:
        batch = await self.consumer.getmany(*tps, timeout_ms=wait_ms, max_records=1000)
        for tp, records in batch.items():
            for record in records:
                if record.key != self.key or record.value is None:
                    continue
                try:
                    if tp == self.parts.status:
                        story.apply(decode_status(record.value))
                    elif tp == self.parts.results:
                        story.count(decode_result(record.value))
                    else:
                        story.requested = True
                except SchemaError:
                    continue  # the sink dead-letters bad records; the CLI reads on

    async def stop(self) -> None:
        with contextlib.suppress(KafkaError, OSError):
            await self.consumer.stop()
        with contextlib.suppress(KafkaError, OSError):
            await self.producer.stop()


async def cancel_and_report(
    settings: CliSettings, cancel: Cancel, *, wait_s: float, console: Console
) -> int:
    """Cancel unless the request has finished, follow the answer, print it; the exit code."""
    story = Story(cancel.request_id)
    reader = CancelReader(settings, cancel.request_id)
    await reader.start()
    try:
        await reader.history(story)
        if story.final is not None:
            code, line = EXIT_ALREADY_FINISHED, finished_message(story.final)
        else:
            await reader.send(cancel)
            console.print(
                f"cancel sent ({story.known} request); waiting for the answer", style="dim"
            )
            if story.known == "unknown":
                wait_s = min(wait_s, UNKNOWN_WAIT_S)
            await reader.follow(story, time.monotonic() + wait_s)
            code, line = verdict(story, waited_s=wait_s)
    finally:
        await reader.stop()
    print(line)
    return code
