"""Counting a fault: what was submitted, what came back, what ran — pure, no I/O."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from collector.outcome import KILLED
from collector.resume import OUTCOME_UNKNOWN
from schemas import Request, Result, Status, StatusCounts

Where = Literal["sim", "sshd"]
COLUMNS = ("lost", "doubled", "run_twice", "orphans")  # every fault row must read 0 in these


@dataclass(frozen=True, slots=True)
class Submitted:
    """One request record the suite produced, and what it must lead to."""

    request: Request
    hosts: tuple[str, ...]  # each gets exactly one final result (none when `rejected`)
    tag: str  # its executions are counted under this tag
    where: Where
    rejected: bool = False  # content that must run nowhere: a reused request_id's other record

    @property
    def request_id(self) -> str:
        return self.request.request_id


@dataclass
class Trial:
    """One fault injected: when it landed and when the system had recovered."""

    fault_at: float
    recovered_at: float | None = None
    note: str = ""

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.fault_at


@dataclass
class Tally:
    """The counts of one fault over all its trials."""

    lost: int = 0
    doubled: int = 0
    run_twice: int = 0
    outcome_unknown: int = 0
    orphans: int = 0
    killed: int = 0  # results `error` / `killed` (the SIGTERM-past-the-grace fault wants some)
    status_anomalies: int = 0  # requests without exactly one `completed` adding up to targets
    results: int = 0
    executions: int = 0
    by_status: dict[str, int] = field(default_factory=dict)  # results per status
    problems: list[str] = field(default_factory=list)  # the first few, for the report

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


def tally(
    submitted: Iterable[Submitted],
    results: Iterable[Result],
    statuses: Iterable[Status],
    rows: Mapping[tuple[str, str, int], int],
    runs: Mapping[tuple[str, str], int],
    orphans: Iterable[str],
) -> Tally:
    """Lost, doubled, run twice, outcome_unknown and orphans for these requests.

    `rows`: PostgreSQL rows per (request_id, host, attempt); `runs`: executions per (tag, host)
    counted on the hosts; `orphans`: what still ran on the hosts once everything had settled.
    """
    t = Tally()
    submitted = list(submitted)
    completed = Counter(s.request_id for s in statuses if s.state == "completed")
    totals = {
        s.request_id: s.counts.total
        for s in statuses
        if s.state == "completed" and isinstance(s.counts, StatusCounts)
    }
    for s in submitted:
        if s.rejected:
            continue
        if completed[s.request_id] != 1 or totals.get(s.request_id) != len(s.hosts):
            t.status_anomalies += 1
            t.problem(
                f"{completed[s.request_id]} completed statuses, counts adding up to "
                f"{totals.get(s.request_id)} of {len(s.hosts)} targets ({s.request_id})"
            )
    expected = {s.request_id for s in submitted if not s.rejected}
    ours = [r for r in results if r.request_id in expected]
    on_topic = Counter((r.request_id, r.host, r.attempt) for r in ours)
    t.results = len(ours)
    t.by_status = dict(Counter(r.status for r in ours))
    for s in submitted:
        for host in s.hosts:
            n = runs.get((s.tag, host), 0)
            t.executions += n
            extra = n - (0 if s.rejected else 1)
            if extra > 0:
                t.run_twice += extra
                t.problem(f"{s.where} {host} ran {s.tag} {n} times ({s.request_id})")
    for s in submitted:
        if s.rejected:
            continue
        for host in s.hosts:
            topic = [k for k in on_topic if k[:2] == (s.request_id, host)]
            stored = [k for k in rows if k[:2] == (s.request_id, host)]
            if not topic or not stored:
                t.lost += 1
                where = "topic" if not topic else "PostgreSQL"
                t.problem(f"no result on the {where} for {host} ({s.request_id})")
            # Not idempotent: one final result per host, whatever its attempt number.
            copies = max(sum(on_topic[k] for k in topic), sum(rows[k] for k in stored))
            if copies > 1:
                t.doubled += copies - 1
                t.problem(f"{copies} results for {host} ({s.request_id})")
    for r in ours:
        if r.error is not None and r.error.type == OUTCOME_UNKNOWN:
            t.outcome_unknown += 1
        if r.error is not None and r.error.type == KILLED:
            t.killed += 1
    for line in orphans:
        t.orphans += 1
        t.problem(f"still running: {line[:160]}")
    return t


@dataclass
class Row:
    """A fault's line in the report."""

    name: str
    title: str
    trials: list[Trial]
    tally: Tally
    checks: dict[str, bool] = field(default_factory=dict)  # did the fault land as intended
    error: str | None = None  # the harness itself failed

    @property
    def failed(self) -> list[str]:
        """Why this row is not all zeros (empty when it is)."""
        why = [f"{c}={getattr(self.tally, c)}" for c in COLUMNS if getattr(self.tally, c)]
        why += [f"check failed: {name}" for name, ok in self.checks.items() if not ok]
        if self.tally.status_anomalies:
            why.append(f"status_anomalies={self.tally.status_anomalies}")
        if self.error:
            why.append(f"harness error: {self.error}")
        return why

    def recovery(self) -> tuple[float | None, float | None]:
        """Median and worst recovery time over the trials that have one."""
        times = [t.recovery_s for t in self.trials if t.recovery_s is not None]
        if not times:
            return None, None
        return statistics.median(times), max(times)

    def as_json(self) -> dict[str, Any]:
        median, worst = self.recovery()
        return {
            "name": self.name,
            "title": self.title,
            "trials": len(self.trials),
            "lost": self.tally.lost,
            "doubled": self.tally.doubled,
            "run_twice": self.tally.run_twice,
            "outcome_unknown": self.tally.outcome_unknown,
            "orphans": self.tally.orphans,
            "killed": self.tally.killed,
            "status_anomalies": self.tally.status_anomalies,
            "by_status": self.tally.by_status,
            "results": self.tally.results,
            "executions": self.tally.executions,
            "recovery_s_median": None if median is None else round(median, 2),
            "recovery_s_max": None if worst is None else round(worst, 2),
            "recovery_s": [
                None if t.recovery_s is None else round(t.recovery_s, 2) for t in self.trials
            ],
            "trial_notes": [t.note for t in self.trials if t.note],
            "checks": self.checks,
            "problems": self.tally.problems,
            "error": self.error,
            "ok": not self.failed,
        }
