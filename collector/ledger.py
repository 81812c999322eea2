"""The execution ledger of one requests partition: what was started and done, for at-most-once.

The ledger topic (`<prefix>ledger`, compacted) has as many partitions as the requests topic, and
the ledger of requests partition p is ledger partition p. Its records, all written through the
partition's transactional producer (collector.outbox):

- key `<request_id>`: a `request` entry (content digest, `running` or `completed`), written with
  the `accepted` status, then with the `completed` status;
- key `<request_id>/<token>`: a `hosts` record (phase `started`, `done` or `released`, and
  (host, port, user, attempt, status) per host): `started` in a transaction committed before
  those hosts' commands launch (one record per request per transaction; marked a window ahead,
  collector.window), `done` in the transaction that carries the hosts' results, `released` for
  hosts marked ahead that a collector stopping in order never started (the next owner runs them).

When a request completes, its `hosts` keys are tombstoned in the same transaction (compaction
then removes them); the `request` entry stays for `retention_s` so a request_id runs once, ever,
and is tombstoned by `PartitionLedger.expired` afterwards. A new owner of the partition reads it
to the end (read_committed) before it takes a request from the partition; see `admit` and
`Prior` for what it then does. The window-by-window argument is in docs/DESIGN.md.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

import msgspec

from schemas import format_timestamp, parse_timestamp

Endpoint = tuple[str, int, str]  # (host, port, user): one host, however its target was spelt
Phase = Literal["started", "done", "released"]
Admission = Literal["new", "resume", "duplicate", "reused"]
# (host, port, user, attempt, status); status is "" in a `started` mark.
Mark = tuple[str, int, str, int, str]

_SEP: Final = "/"


class RequestEntry(msgspec.Struct, frozen=True, tag="request", tag_field="kind"):
    digest: str
    state: Literal["running", "completed"]
    collector: str
    at: str
    # Split into this many shards (collector.sharded): its next owner waits for the shards
    # rather than running hosts, whatever its own shard size says. 0: run here.
    shards: int = 0


class HostMarks(msgspec.Struct, frozen=True, tag="hosts", tag_field="kind"):
    request_id: str
    phase: Phase
    hosts: list[Mark]
    collector: str
    at: str


_decoder: Final = msgspec.json.Decoder(RequestEntry | HostMarks)
_encoder: Final = msgspec.json.Encoder()


class LedgerError(ValueError):
    """A ledger record that cannot be read (written by something else than a collector)."""


def digest(value: bytes | None) -> str:
    """The identity of a request record's content: a producer retry sends the same bytes."""
    return hashlib.sha256(value or b"").hexdigest()


@dataclass(slots=True)
class Prior:
    """What the ledger knows of one request."""

    digest: str | None  # None: marks seen but not the request entry (it is in the same txn)
    completed: bool = False
    at: datetime | None = None
    started: dict[Endpoint, int] = field(default_factory=dict)
    done: dict[Endpoint, tuple[int, str]] = field(default_factory=dict)
    mark_keys: list[bytes] = field(default_factory=list)
    shards: int = 0  # split into shards: the shards run the hosts (collector.sharded)

    def unfinished(self) -> dict[Endpoint, int]:
        """Hosts started and never reported done: their outcome is unknown."""
        return {e: a for e, a in self.started.items() if e not in self.done}


class PartitionLedger:
    """The ledger state of one requests partition, replayed from the topic and kept current."""

    def __init__(self, partition: int, *, collector: str) -> None:
        self.partition = partition
        self.collector = collector
        self.requests: dict[str, Prior] = {}
        self.running_here: set[str] = set()
        self.replayed = 0
        # Keys of host marks must never collide with an earlier owner's (compaction keeps only
        # the last value per key): a random token per ledger instance plus a counter.
        self._token = secrets.token_hex(6)
        self._seq = itertools.count(1)

    # --- replay ------------------------------------------------------------------------------

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one ledger record (in offset order) into the state."""
        if key is None:
            raise LedgerError("ledger record without a key")
        text = key.decode("utf-8", "replace")
        self.replayed += 1
        request_id, sep, _ = text.partition(_SEP)
        if value is None:  # a tombstone
            if not sep:
                self.requests.pop(request_id, None)
            return
        try:
            entry = _decoder.decode(value)
        except msgspec.DecodeError as exc:
            raise LedgerError(f"ledger record {text!r}: {exc}") from None
        if isinstance(entry, RequestEntry):
            prior = self.requests.setdefault(request_id, Prior(entry.digest))
            prior.digest = entry.digest
            prior.at = parse_timestamp(entry.at)
            prior.shards = entry.shards
            if entry.state == "completed":
                self._complete(prior)
            return
        prior = self.requests.setdefault(entry.request_id, Prior(None))
        if prior.completed:
            return  # its tombstone follows in the same transaction
        prior.mark_keys.append(key)
        self._fold(prior, entry.phase, entry.hosts)

    @staticmethod
    def _fold(prior: Prior, phase: Phase, marks: Iterable[Mark]) -> None:
        for host, port, user, attempt, status in marks:
            endpoint = (host, port, user)
            if phase == "started":
                prior.started[endpoint] = max(attempt, prior.started.get(endpoint, 0))
            elif phase == "done":
                prior.done[endpoint] = (attempt, status)
            elif prior.started.get(endpoint) == attempt:  # released: that attempt never began
                # Attempts marked ahead follow the last one started (an idempotent rerun's
                # base), so the one before is what the host's ledger said until then.
                if attempt > 1:
                    prior.started[endpoint] = attempt - 1
                else:
                    del prior.started[endpoint]

    @staticmethod
    def _complete(prior: Prior) -> None:
        prior.completed = True
        prior.started.clear()
        prior.done.clear()
        prior.mark_keys.clear()

    # --- decisions ---------------------------------------------------------------------------

    def admit(self, request_id: str, content: str) -> Admission:
        """What to do with a request record whose value has digest `content`."""
        prior = self.requests.get(request_id)
        if prior is None:
            return "new"
        if prior.digest is not None and prior.digest != content:
            return "reused"
        if prior.completed or request_id in self.running_here:
            return "duplicate"
        return "resume"

    def prior(self, request_id: str) -> Prior | None:
        return self.requests.get(request_id)

    # --- records this collector writes -------------------------------------------------------

    def begin(
        self, request_id: str, content: str, now: datetime, *, shards: int = 0
    ) -> tuple[bytes, bytes] | None:
        """Start running a request here; the `running` entry to write (None when resuming)."""
        self.running_here.add(request_id)
        prior = self.requests.get(request_id)
        if prior is not None and prior.digest == content:
            return None  # resumed: the entry is in the ledger already
        self.requests[request_id] = Prior(content, at=now, shards=shards)
        return self._entry(request_id, content, "running", now, shards)

    def marks_record(
        self, request_id: str, phase: Phase, marks: list[Mark], now: datetime
    ) -> tuple[bytes, bytes]:
        """One `hosts` record for marks of one request written in one transaction."""
        key = f"{request_id}{_SEP}{self._token}-{next(self._seq)}".encode()
        prior = self.requests.setdefault(request_id, Prior(None, at=now))
        prior.mark_keys.append(key)
        self._fold(prior, phase, marks)
        mark = HostMarks(request_id, phase, marks, self.collector, format_timestamp(now))
        return key, _encoder.encode(mark)

    def finish(self, request_id: str, now: datetime) -> Iterator[tuple[bytes, bytes | None]]:
        """The records that close a request: tombstones of its marks, then `completed`."""
        self.running_here.discard(request_id)
        prior = self.requests.setdefault(request_id, Prior(None, at=now))
        for key in prior.mark_keys:
            yield key, None
        content = prior.digest or ""
        self._complete(prior)
        prior.at = now
        yield self._entry(request_id, content, "completed", now)

    def forget_running(self, request_id: str) -> None:
        """The request stopped here without completing (handed over): its marks stay."""
        self.running_here.discard(request_id)

    def expired(self, now: datetime, retention: timedelta) -> list[bytes]:
        """Keys of completed requests past the retention (to tombstone); dropped from memory."""
        cutoff = now - retention
        old = [
            rid
            for rid, prior in self.requests.items()
            if prior.completed and prior.at is not None and prior.at < cutoff
        ]
        for rid in old:
            del self.requests[rid]
        return [rid.encode() for rid in old]

    def _entry(
        self,
        request_id: str,
        content: str,
        state: Literal["running", "completed"],
        now: datetime,
        shards: int = 0,
    ) -> tuple[bytes, bytes]:
        entry = RequestEntry(content, state, self.collector, format_timestamp(now), shards)
        return request_id.encode(), _encoder.encode(entry)
