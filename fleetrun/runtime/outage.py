"""Outages of a service's dependencies (Kafka, PostgreSQL): what the logs say, what /healthz says.

Every retry loop, probe and library log line that meets a dependency reports to one tracker,
`Outages`, keyed by the dependency's name, instead of logging for itself:

    outages.failed("database", describe(exc), what="flush_retries")   # evidence it is down
    outages.ok("database")                                            # evidence it is up

and the tracker logs, per dependency (logger `fleetrun.outage`):
- one ERROR line when it goes ("database unavailable", with the error),
- a WARNING summary at most every `summary_every_s` while it stays down ("still unavailable":
  for how long, what was retried, how many library lines were folded),
- one INFO line when it comes back ("available again": how long it was down, the counts, and
  what the service reports as queued meanwhile, see `set_context`).
A dependency that flaps (fails again within `summary_every_s` of the last line about it) is not
announced each time: its short outages are counted and reported in one "unstable" line per
window, or in the summary if it stays down. /healthz reads the state at once in every case.

`NoiseFilter` is the logging.Filter (installed on the service's handler by runtime/logs.py,
with one `LibraryNoise` rule per client library) that folds a library's repeats: aiokafka logs
an ERROR per failed connection attempt. The first record of each kind per outage passes;
repeats while the dependency is down are counted here.

Why not a library: log rate limiters (say, logging filters keyed by message) neither know
whether a dependency is up nor say how long it was down; /healthz needs that state anyway.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("fleetrun.outage")

SUMMARY_EVERY_S: Final = 30.0

Context = Callable[[], Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class DependencyState:
    """What /healthz says about one dependency."""

    name: str
    up: bool | None  # None: nothing known yet
    since: float | None  # wall-clock time of the last change (epoch seconds)
    for_s: float  # how long it has been so
    error: str | None  # the last failure seen while down

    def as_dict(self) -> dict[str, Any]:
        """`{"up": false, "since": "2026-…Z", "down_for_s": 12.5, "error": "…"}`."""
        doc: dict[str, Any] = {
            "up": self.up,
            "since": _iso(self.since) if self.since is not None else None,
        }
        if self.up is False:
            doc["down_for_s"] = round(self.for_s, 1)
            doc["error"] = self.error
        return doc


@dataclass(slots=True)
class _Dependency:
    up: bool | None = None
    changed_at: float = 0.0  # monotonic
    since: float | None = None  # wall clock
    error: str | None = None
    counts: Counter[str] = field(default_factory=Counter)  # this outage, by what was retried
    announced: bool = False  # this outage has had a line of its own
    last_line_at: float | None = None  # monotonic time of the last line about it
    flaps: int = 0  # short outages not announced since the last line
    flap_down_s: float = 0.0
    folded: set[tuple[str, object]] = field(default_factory=set)  # library records passed


class Outages:
    """Up/down state per dependency and the few log lines about it (see the module docstring)."""

    def __init__(
        self,
        *,
        summary_every_s: float = SUMMARY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        logger: logging.Logger = log,
    ) -> None:
        self.summary_every_s = summary_every_s
        self.clock = clock
        self.wall = wall
        self.log = logger
        self._deps: dict[str, _Dependency] = {}
        self._context: Context | None = None
        # Reports come from the event loop and, through logging, from any thread. Lines are
        # logged after the lock is released: a line passes LibraryNoise, which reports here.
        self._lock = threading.Lock()

    def set_context(self, context: Context | None) -> None:
        """What the service adds to summary and recovery lines (say, what it holds queued)."""
        self._context = context

    def failed(
        self,
        dependency: str,
        error: str,
        *,
        what: str | None = None,
        count: int = 1,
        fields: Mapping[str, object] | None = None,
    ) -> None:
        """Evidence that `dependency` is unavailable; `what` counts what was retried (a field
        name such as "flush_retries"); `fields` go on the line, if this report makes one."""
        with self._lock:
            dep = self._deps.setdefault(dependency, _Dependency())
            now = self.clock()
            line: tuple[int, str, dict[str, object]] | None = None
            if dep.up is not False:
                dep.up, dep.changed_at, dep.since = False, now, self.wall()
                dep.counts.clear()
                dep.folded.clear()
                # A relapse soon after the last line is counted, not announced (flapping).
                dep.announced = not self._recent(dep, now)
                if dep.announced:
                    dep.last_line_at = now
                    line = (logging.ERROR, f"{dependency} unavailable", {"error": error})
            elif self._due(dep, now):
                dep.last_line_at, dep.announced = now, True
                line = (
                    logging.WARNING,
                    f"{dependency} still unavailable",
                    {"down_for_s": round(now - dep.changed_at, 1), "error": error},
                )
            dep.error = error
            if what:
                dep.counts[what] += count
            if line is not None:
                line[2].update(self._tally(dep))
                line[2].update(fields or {})
        if line is not None:
            self._emit(dependency, line)

    def ok(self, dependency: str) -> None:
        """Evidence that `dependency` is available."""
        with self._lock:
            dep = self._deps.setdefault(dependency, _Dependency())
            now = self.clock()
            line: tuple[int, str, dict[str, object]] | None = None
            if dep.up is not True:
                was_down = dep.up is False
                down_s = now - dep.changed_at
                dep.up, dep.changed_at, dep.since = True, now, self.wall()
                if was_down and dep.announced:
                    dep.last_line_at = now
                    fields = {"down_for_s": round(down_s, 1), **self._tally(dep)}
                    line = (logging.INFO, f"{dependency} available again", fields)
                elif was_down:
                    dep.flaps += 1
                    dep.flap_down_s += down_s
                dep.counts.clear()
            if line is None and dep.flaps and self._due(dep, now):
                line = (
                    logging.WARNING,
                    f"{dependency} unstable",
                    {"outages": dep.flaps, "down_s": round(dep.flap_down_s, 1)},
                )
                dep.last_line_at, dep.flaps, dep.flap_down_s = now, 0, 0.0
        if line is not None:
            self._emit(dependency, line)

    def fold(self, dependency: str, kind: tuple[str, object], what: str) -> bool:
        """For a library's log record of `kind` about `dependency`: True when it should be
        dropped (a repeat during an outage), counted as `what`; False to let it through."""
        with self._lock:
            dep = self._deps.get(dependency)
            if dep is None or dep.up is not False:
                return False
            if kind not in dep.folded:
                dep.folded.add(kind)
                return False
            dep.counts[what] += 1
            return True

    def is_down(self, dependency: str) -> bool:
        """True while `dependency` is known to be unavailable."""
        dep = self._deps.get(dependency)
        return dep is not None and dep.up is False

    def state(self, dependency: str) -> DependencyState:
        """The dependency's state for /healthz."""
        with self._lock:
            dep = self._deps.get(dependency) or _Dependency()
            for_s = self.clock() - dep.changed_at if dep.since is not None else 0.0
            return DependencyState(dependency, dep.up, dep.since, for_s, dep.error)

    def health(self, dependencies: Iterable[str]) -> tuple[bool, dict[str, Any]]:
        """A /healthz check: healthy when every dependency is known to be up."""
        states = [self.state(name) for name in dependencies]
        doc = {s.name: s.as_dict() for s in states}
        return all(s.up for s in states), {"dependencies": doc}

    # -- internals ----------------------------------------------------------------------------

    def _recent(self, dep: _Dependency, now: float) -> bool:
        return dep.last_line_at is not None and now - dep.last_line_at < self.summary_every_s

    def _due(self, dep: _Dependency, now: float) -> bool:
        return dep.last_line_at is None or now - dep.last_line_at >= self.summary_every_s

    def _tally(self, dep: _Dependency) -> dict[str, object]:
        fields: dict[str, object] = dict(sorted(dep.counts.items()))
        if dep.flaps:
            fields["earlier_outages"] = dep.flaps
        return fields

    def _emit(self, dependency: str, line: tuple[int, str, dict[str, object]]) -> None:
        level, message, fields = line
        extra: dict[str, object] = {"dependency": dependency, **fields}
        # The context (what is queued) tells what an outage cost: on the lines written during
        # and after one, not on the first, written before anything could pile up.
        if level != logging.ERROR and self._context is not None:
            try:
                extra.update(self._context())
            except Exception as exc:  # a report must never fail the retry loop that made it
                extra["context_error"] = repr(exc)
        self.log.log(level, message, extra=extra)


@dataclass(frozen=True, slots=True)
class LibraryNoise:
    """Which library loggers speak for which dependency, and which of their records say that
    it cannot be reached (those open an outage; the rest only fold while one is open)."""

    dependency: str
    loggers: tuple[str, ...]
    unreachable: Callable[[logging.LogRecord], bool]


class NoiseFilter(logging.Filter):
    """Folds repeated library records about a dependency that is down into the tracker.

    Installed on a handler, so it sees records of every logger. A record of a listed library
    logger (WARNING and up) that says the dependency cannot be reached reports the failure.
    While the dependency is down, the first record of each kind passes and its repeats are
    dropped and counted ("<library>_lines_folded"); a kind is "cannot reach it" (whatever the
    words) or, for the library's other records, the logger and message template. Records of
    other loggers, and library records while the dependency is up, always pass.
    """

    def __init__(self, outages: Outages, noise: Iterable[LibraryNoise]) -> None:
        super().__init__()
        self.outages = outages
        self.noise = tuple(noise)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        for rule in self.noise:
            library = _owner(record.name, rule.loggers)
            if library is None:
                continue
            unreachable = rule.unreachable(record)
            if unreachable and not self.outages.is_down(rule.dependency):
                self.outages.failed(rule.dependency, record.getMessage())
            # Every "cannot reach it" record of a library says the same as the outage line:
            # one kind. Its other records (the consequences) pass once per message.
            kind = (library, "unreachable") if unreachable else (record.name, record.msg)
            return not self.outages.fold(rule.dependency, kind, f"{library}_lines_folded")
        return True


def _owner(name: str, loggers: tuple[str, ...]) -> str | None:
    for prefix in loggers:
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return None


async def watch(
    outages: Outages,
    dependency: str,
    check: Callable[[], Awaitable[object]],
    *,
    interval_s: float = 2.0,
    timeout_s: float = 2.0,
) -> None:
    """Run `check` now and every `interval_s`, each under a `timeout_s` deadline, and report
    the outcome: idle services notice an outage too. Runs until cancelled."""
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                await check()
        except TimeoutError:
            outages.failed(dependency, f"no answer within {timeout_s:g} s")
        except Exception as exc:  # what fails here is the dependency, whatever the error
            outages.failed(dependency, _reason(exc))
        else:
            outages.ok(dependency)
        await asyncio.sleep(interval_s)


_TRACKER = Outages()


def tracker() -> Outages:
    """The process's tracker: library logs (runtime/logs.py), retry loops and probes share it,
    as an outage is a fact about the whole process."""
    return _TRACKER


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _iso(epoch: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    return f"{stamp}.{int(epoch % 1 * 1000):03d}Z"
