"""Everything the collector writes for one requests partition, in Kafka transactions.

One transactional producer per owned requests partition, `transactional.id =
<group>.<requests topic>.<partition>`: the next owner of the partition initialises the same id,
which fences this one (a collector that lost its partition without noticing cannot start a host
or publish a result any more) and aborts whatever transaction it left open.

Writers call `write(records)` and get back once a transaction holding their records has
committed. Writes are group-committed: the loop takes everything queued, sends it in one
transaction, commits, and wakes every writer of it; writes queued meanwhile go into the next
one. So the ledger's `started` marks of a fan-out window, the results of hosts finishing
together and their `done` marks share transactions, never one round trip per host.

A write's records are never split between transactions. A record the broker refuses for good
(too large) fails its own write only; the rest of the batch is sent again in a new transaction.
While Kafka is away, the loop retries with backoff, forever: nothing queued is dropped, and
writers simply wait (their requests stay uncommitted) until the broker is back or the collector
stops.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced

from collector.errors import CollectorError, RecordTooLarge, classify
from collector.ledger import Mark, Phase
from fleetrun.runtime.backoff import backoff_delay

log = logging.getLogger("fleetrun.collector.outbox")

_BACKOFF_BASE_S: Final = 0.2
_BACKOFF_MAX_S: Final = 5.0
_CLOSE_TIMEOUT_S: Final = 10.0
# InitProducerId waits while the broker aborts the previous owner's open transaction: seconds
# at most when the broker is well; past a minute something is wrong (say so, and give up).
_START_SLOW_S: Final = 10.0
_START_TIMEOUT_S: Final = 60.0


class Fenced(CollectorError):
    """Another collector owns this partition now: nothing more may be written for it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class HandedOver(CollectorError):
    """The partition is being handed over: no new host may start (the next owner runs it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


@dataclass(frozen=True, slots=True)
class Out:
    """One record to write; `partition` None: the topic's default partitioner (by key)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None


# (request_id, phase, mark): ledger marks, merged into one record per request and phase per
# transaction by the outbox's `encode_marks`.
MarkItem = tuple[str, Phase, Mark]
EncodeMarks = Callable[[str, Phase, list[Mark]], Out]


@dataclass(slots=True)
class _Write:
    records: Sequence[Out]
    marks: Sequence[MarkItem]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Outbox:
    """The transactional writer of one requests partition (see the module docstring)."""

    def __init__(
        self,
        make_producer: Callable[[], AIOKafkaProducer],
        *,
        name: str,
        encode_marks: EncodeMarks | None = None,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._make_producer = make_producer
        self.name = name
        self._encode_marks = encode_marks
        self._on_commit = on_commit
        self.producer = make_producer()
        self._queue: list[_Write] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._fenced: Fenced | None = None
        self.transactions = 0
        self.failing_since: float | None = None
        self.last_error: str | None = None

    def set_mark_encoder(self, encode_marks: EncodeMarks) -> None:
        self._encode_marks = encode_marks

    async def start(self) -> None:
        """Initialise the transactional id (fences the previous owner), start the loop.

        Bounded: a start that takes _START_TIMEOUT_S fails (CollectorError) rather than hold
        the group's rebalance, and one past _START_SLOW_S is logged while it waits."""
        slow = asyncio.get_running_loop().call_later(
            _START_SLOW_S,
            lambda: log.warning(
                "transactional producer still starting (the broker may be aborting the "
                "previous owner's transaction)",
                extra={"partition": self.name, "waited_s": _START_SLOW_S},
            ),
        )
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                await self.producer.start()
        except BaseException as exc:
            # Cancelled or failed half way (InitProducerId, say): its connections stay open
            # unless it is stopped.
            # Shielded: the stop must run even when the caller is cancelled again meanwhile.
            stopping = asyncio.ensure_future(self.producer.stop())
            await asyncio.shield(asyncio.gather(stopping, return_exceptions=True))
            if isinstance(exc, TimeoutError | KafkaError):
                raise classify(exc, f"starting the transactional producer of {self.name}") from exc
            raise
        finally:
            slow.cancel()
        self._task = asyncio.create_task(self._run(), name=f"outbox {self.name}")

    async def write(self, records: Sequence[Out], marks: Sequence[MarkItem] = ()) -> None:
        """Queue `records` (and ledger `marks`); return once committed, all of them, or raise."""
        if self._fenced is not None:
            raise self._fenced
        if self._closing and self._task is None:
            raise HandedOver(f"{self.name}: closed")
        item = _Write(records, marks)
        self._queue.append(item)
        self._wake.set()
        # Shielded: a writer cancelled while waiting does not take its records back (the
        # result of a host whose request is being cancelled still lands with its done mark).
        await asyncio.shield(item.done)

    async def publish(self, topic: str, key: bytes | None, value: bytes, **_: Any) -> None:
        """The handler's Publisher interface: one record, committed."""
        await self.write([Out(topic, key, value)])

    @property
    def fenced(self) -> bool:
        return self._fenced is not None

    async def close(self, *, timeout_s: float = _CLOSE_TIMEOUT_S) -> None:
        """Commit what is queued (within `timeout_s`), then stop the producer."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(task)
            except TimeoutError:
                log.warning(
                    "outbox did not commit its last writes in time; they are aborted",
                    extra={"outbox": self.name, "writes": len(self._queue)},
                )
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._fail_queued(HandedOver(f"{self.name}: closed before these records were written"))
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self.producer.stop()
        except Exception as exc:
            log.warning("outbox producer did not close cleanly", extra={"error": repr(exc)})

    # --- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._queue = self._queue, []
            try:
                await self._commit(batch)
            except Fenced as exc:
                self._fenced = exc
                for item in batch:
                    _settle(item, exc)
                self._fail_queued(exc)
                log.error(
                    "partition fenced: another collector owns it now", extra={"outbox": self.name}
                )
                return

    async def _commit(self, batch: list[_Write]) -> None:
        """One transaction holding every write of `batch`; retried until it commits."""
        failures = 0
        while batch:
            try:
                await self._transaction(batch)
            except _Refused as refused:
                # One write's record can never be written: fail that write, send the others.
                _settle(refused.write, refused.error)
                batch = [w for w in batch if w is not refused.write]
                continue
            except ProducerFenced as exc:
                raise Fenced(f"{self.name}: {exc}") from exc
            except (KafkaError, OSError, TimeoutError) as exc:
                failures += 1
                error = classify(exc, f"writing the transaction of {self.name}")
                self._note_failure(error)
                await self._abort()
                delay = backoff_delay(failures, _BACKOFF_BASE_S, _BACKOFF_MAX_S, random.random())
                log.debug("transaction failed, retrying", extra={"error": str(error)})
                await asyncio.sleep(delay)
                continue
            self.transactions += 1
            if self._on_commit is not None:
                self._on_commit(len(batch))
            if self.failing_since is not None:
                log.info("transactions commit again", extra={"outbox": self.name})
            self.failing_since = None
            for item in batch:
                _settle(item, None)
            return

    async def _transaction(self, batch: list[_Write]) -> None:
        await self.producer.begin_transaction()
        sent: list[tuple[_Write, asyncio.Future[Any]]] = []
        for item, out in self._records(batch):
            fut = await self.producer.send(
                out.topic, out.value, key=out.key, partition=out.partition
            )
            sent.append((item, fut))
        for item, fut in sent:
            try:
                await fut
            except KafkaError as exc:
                error = classify(exc, f"writing to {self.name}")
                if isinstance(error, RecordTooLarge):
                    await self._abort()
                    raise _Refused(item, error) from exc
                raise
        await self.producer.commit_transaction()

    def _records(self, batch: list[_Write]) -> list[tuple[_Write, Out]]:
        """The batch's records in queue order, its marks merged per (request, phase) and each
        merged record placed at its first mark's write (a request's `running` entry, queued
        before its first `started` mark, stays before it in the ledger partition)."""
        merged: dict[tuple[str, Phase], tuple[_Write, list[Mark]]] = {}
        out: list[tuple[_Write, Out | tuple[str, Phase]]] = []
        for item in batch:
            out.extend((item, r) for r in item.records)
            for request_id, phase, mark in item.marks:
                slot = merged.get((request_id, phase))
                if slot is None:
                    merged[(request_id, phase)] = (item, [mark])
                    out.append((item, (request_id, phase)))
                else:
                    slot[1].append(mark)
        encode = self._encode_marks
        if merged and encode is None:
            raise RuntimeError(f"{self.name}: ledger marks written to an outbox without a ledger")
        records: list[tuple[_Write, Out]] = []
        for item, entry in out:
            if isinstance(entry, Out):
                records.append((item, entry))
            else:
                assert encode is not None
                records.append((item, encode(entry[0], entry[1], merged[entry][1])))
        return records

    async def _abort(self) -> None:
        """After a failed transaction: abort it, or start over with a new producer."""
        try:
            await self.producer.abort_transaction()
        except ProducerFenced as exc:
            raise Fenced(f"{self.name}: {exc}") from exc
        except Exception:
            await self._renew()

    async def _renew(self) -> None:
        """A new producer with the same transactional id: its init aborts what is left open."""
        old, self.producer = self.producer, self._make_producer()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await old.stop()
        except Exception as exc:
            log.debug("old outbox producer did not stop cleanly", extra={"error": repr(exc)})
        while True:
            try:
                await self.producer.start()
                return
            except ProducerFenced as exc:
                raise Fenced(f"{self.name}: {exc}") from exc
            except (KafkaError, OSError, TimeoutError) as exc:
                self._note_failure(classify(exc, f"re-initialising {self.name}"))
                with_fresh = self._make_producer()
                await asyncio.gather(self.producer.stop(), return_exceptions=True)
                self.producer = with_fresh
                await asyncio.sleep(_BACKOFF_MAX_S * random.random())

    def _note_failure(self, error: CollectorError) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning(
                "transactions failing; retrying until Kafka takes them",
                extra={"outbox": self.name, "error": str(error)},
            )
        self.last_error = str(error)

    def _fail_queued(self, error: CollectorError) -> None:
        queued, self._queue = self._queue, []
        for item in queued:
            _settle(item, error)


class _Refused(Exception):
    def __init__(self, write: _Write, error: CollectorError) -> None:
        super().__init__(str(error))
        self.write = write
        self.error = error


def _settle(item: _Write, error: BaseException | None) -> None:
    if item.done.done():
        return
    if error is None:
        item.done.set_result(None)
    else:
        item.done.set_exception(error)
        item.done.exception()  # retrieved: a writer that was cancelled meanwhile never will
