"""Resuming a request from the ledger: which hosts run, which are reported unknown, and the
lane (outbox + ledger) of a requests partition that the handler writes through."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Generic

import msgspec

import schemas
from collector.fanout import H, PlannedHost, host_identity, synthetic_result
from collector.ledger import Endpoint, Mark, PartitionLedger, Phase, Prior
from collector.outbox import Out, Outbox
from schemas import ErrorInfo, Request, Result

REUSED_ID: Final = schemas.REQUEST_ID_REUSED
OUTCOME_UNKNOWN: Final = "outcome_unknown"


class RequestIdReused(ValueError):
    """A request record whose request_id names another request already (other content)."""


@dataclass(slots=True)
class Lane:
    """One requests partition's way out: its transactional outbox and its execution ledger."""

    outbox: Outbox
    ledger: PartitionLedger
    ledger_topic: str
    # Set when the partition is being handed over (revoked, or the collector is stopping):
    # no host may start any more; hosts not started are left to the next owner.
    handing_over: bool = False
    duplicates_logged: set[str] = field(default_factory=set)

    def encode_marks(self, request_id: str, phase: Phase, marks: list[Mark]) -> Out:
        key, value = self.ledger.marks_record(request_id, phase, marks, datetime.now(UTC))
        return Out(self.ledger_topic, key, value, self.ledger.partition)

    def entry(self, item: tuple[bytes, bytes | None]) -> Out:
        return Out(self.ledger_topic, item[0], item[1], self.ledger.partition)


@dataclass(frozen=True, slots=True)
class Resume(Generic[H]):
    """A request's hosts against what the ledger knows of it."""

    todo: list[PlannedHost[H]]  # run them (never started, or idempotent and unknown)
    unknown: list[tuple[PlannedHost[H], int]]  # started, never reported: (host, its attempt)
    done: list[str]  # statuses of the planned hosts already reported (they count in completed)
    base: dict[Endpoint, int]  # idempotent reruns: attempt numbers continue from here


def split_resume(
    hosts: Iterable[PlannedHost[H]], prior: Prior | None, default_user: str, idempotent: bool
) -> Resume[H]:
    """Done hosts are neither run nor published again; started-only hosts get outcome_unknown,
    or run again as attempt + 1 when the request is idempotent; the rest run."""
    done = dict(prior.done) if prior else {}
    started = prior.unfinished() if prior else {}
    todo: list[PlannedHost[H]] = []
    unknown: list[tuple[PlannedHost[H], int]] = []
    statuses: list[str] = []
    for planned in hosts:
        endpoint = host_identity(planned, default_user)
        if endpoint in done:
            statuses.append(done[endpoint][1])  # only hosts of today's plan count
        elif endpoint in started and not idempotent:
            unknown.append((planned, started[endpoint]))
        else:
            todo.append(planned)
    return Resume(todo, unknown, statuses, dict(started) if idempotent else {})


def unknown_result(
    request: Request,
    planned: PlannedHost[H],
    attempt: int,
    collector: str,
    default_user: str,
    now: datetime,
) -> Result:
    """The one final result of a host whose command may or may not have run."""
    error = ErrorInfo.bounded(
        OUTCOME_UNKNOWN,
        "an earlier collector started the command on this host and stopped before reporting"
        " how it ended; it may or may not have run (not run again: the request is not"
        " idempotent)",
    )
    result = synthetic_result(
        request,
        planned,
        "error",
        collector=collector,
        now=now,
        default_user=default_user,
        error=error,
    )
    return msgspec.structs.replace(result, attempt=attempt)
