"""Fan-out: which hosts a request runs on, and running them as a sliding window.

The planning and the per-host gate (expired? budget spent?) are pure functions; `FanOut.run` is
the small async runner around an `Executor` (the SSH executor, or a fake in unit tests). Per-host
failures are results, never exceptions: one bad host never cancels its siblings. The runner only
raises when the caller's `on_result` does (the results cannot be published) or when cancelled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Generic, Literal, Protocol, TypeVar

from collector.confine import OVERRIDES, Listing, Override, check_confined
from collector.outbox import HandedOver
from collector.stop import Stop
from collector.window import StartWindow
from schemas import (
    EMPTY_SHA256,
    ErrorInfo,
    Request,
    Result,
    ResultStatus,
    Target,
    expand_targets,
    format_timestamp,
    limits,
    parse_timestamp,
)

log = logging.getLogger("fleetrun.collector.fanout")

DEFAULT_PORT: Final = 22

# The statuses that spend the error budget: the host was tried and did not succeed. `skipped`
# and `expired` are decisions of the collector, not outcomes on the host, so they never count
# (a skipped host spending budget would not change anything, an expired one would turn later
# `expired` results into `skipped` ones and hide why they did not run).
ERROR_STATUSES: Final[frozenset[ResultStatus]] = frozenset(
    {"failed", "timeout", "unreachable", "auth_failed", "host_key_mismatch", "error"}
)

Gate = Literal["run", "expired", "skipped"]


class HostLike(Protocol):
    """What the fan-out needs from a resolved host (collector.inventory.HostSpec has it)."""

    @property
    def name(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def address(self) -> str: ...  # what the collector connects to (not how it was spelt)
    @property
    def jump(self) -> HostLike | None: ...  # the host it is reached through, if any


H = TypeVar("H", bound=HostLike)
H_co = TypeVar("H_co", bound=HostLike, covariant=True)
# Awaited by the executor right before the command is launched on `host` (attempt number).
OnStart = Callable[[H, int], Awaitable[None]]


class Resolver(Protocol[H_co]):
    """The inventory as the fan-out sees it: groups for expansion, and target → host."""

    @property
    def groups(self) -> Mapping[str, Sequence[str]]: ...
    @property
    def listing(self) -> Listing: ...  # which names it lists, for confinement
    def resolve(self, target: Target) -> H_co: ...


class Executor(Protocol[H]):
    """Runs one request on one host and returns its final result (never raises per host)."""

    async def run(
        self,
        host: H,
        request: Request,
        *,
        collector: str,
        on_start: OnStart[H] | None = None,
        stop: Stop | None = None,
    ) -> Result: ...


@dataclass(frozen=True, slots=True)
class PlannedHost(Generic[H]):
    """One expanded target: its resolved host, or why it could not be resolved."""

    target: Target
    host: H | None
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class Plan(Generic[H]):
    """A request's hosts in target order and its error budget."""

    request: Request
    hosts: tuple[PlannedHost[H], ...]
    budget: int | None
    expires_at: datetime | None  # the request's, read once

    @property
    def total(self) -> int:
        return len(self.hosts)


# --- pure rules --------------------------------------------------------------------------------


def plan_request(
    request: Request,
    resolver: Resolver[H],
    *,
    allow_targets: Collection[Override] = (),
    max_targets: int = limits.MAX_TARGETS,
) -> Plan[H]:
    """Expand the request's targets and resolve each; raises TargetError on bad targets.

    Confined to the inventory: a target using an override not in `allow_targets` (a name
    outside the inventory, its own user or port: collector.confine) fails the whole request
    before any target is resolved, so nothing runs and nothing is connected to.
    Targets that reach the same endpoint (see `endpoint_key`) are one host: it is planned
    once, under its first spelling in target order, so it runs once and counts once.
    """
    targets = expand_targets(request.targets, resolver.groups, max_targets=max_targets)
    if len(allow_targets) < len(OVERRIDES):
        check_confined(targets, resolver.listing, allow_targets)
    hosts: list[PlannedHost[H]] = []
    first: dict[Hashable, PlannedHost[H]] = {}
    merged: list[str] = []
    for target in targets:
        planned = _resolve(resolver, target)
        kept = first.setdefault(endpoint_key(planned), planned)
        if kept is planned:
            hosts.append(planned)
        else:
            merged.append(f"{target} = {kept.target}")
    if merged:
        log.info(
            "targets that reach the same host run once, under their first spelling",
            extra={"request_id": request.request_id, "merged": ", ".join(merged[:20])},
        )
    expires_at = None if request.expires_at is None else parse_timestamp(request.expires_at)
    return Plan(request, tuple(hosts), request.error_budget(len(hosts)), expires_at)


def _resolve(resolver: Resolver[H], target: Target) -> PlannedHost[H]:
    try:
        return PlannedHost(target, resolver.resolve(target))
    except Exception as exc:  # a per-host configuration problem is that host's result
        return PlannedHost(target, None, ErrorInfo.from_exception(exc))


def endpoint_key(planned: PlannedHost[H]) -> Hashable:
    """What makes two targets one host: where the collector would really connect.

    A resolved target is its (address, port, user), and those of the jump hosts it is reached
    through: the same private address behind two bastions is two machines. An unresolvable
    target has no address, so its spelling (name, port, user) is all there is to compare.
    """
    if planned.host is None:
        t = planned.target
        return ("unresolved", t.name, t.port or DEFAULT_PORT, t.user)
    route: list[tuple[str, int, str]] = []
    hop: HostLike | None = planned.host
    while hop is not None:
        route.append((_canonical_address(hop.address), hop.port, hop.user))
        hop = hop.jump
    return tuple(route)


def _canonical_address(address: str) -> str:
    """One spelling per address: IPs in their compressed form, DNS names lower-case and
    without the root dot (names are compared as written: resolving them is the connect's job,
    and what a name resolves to may change between planning and connecting)."""
    try:
        return ipaddress.ip_address(address.strip("[]")).compressed
    except ValueError:
        return address.lower().rstrip(".")


def counts_as_error(status: ResultStatus) -> bool:
    """Whether a final status spends the request's error budget."""
    return status in ERROR_STATUSES


def budget_exhausted(errors: int, budget: int | None) -> bool:
    """Past the budget (more errors than allowed), hosts not yet started are skipped."""
    return budget is not None and errors > budget


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """A request reached at or after its expires_at is expired."""
    return expires_at is not None and now >= expires_at


def gate(
    *,
    now: datetime,
    expires_at: datetime | None,
    errors: int,
    budget: int | None,
    spent: bool = False,
) -> Gate:
    """What happens to a host whose turn has come: run it, or give it a final status now.

    `spent`: the budget was spent elsewhere (a sharded request's other shards; a drain)."""
    # Expiry first: an expired request should not run at all, whatever its budget says.
    if is_expired(expires_at, now):
        return "expired"
    if spent or budget_exhausted(errors, budget):
        return "skipped"
    return "run"


def host_identity(planned: PlannedHost[H], default_user: str) -> tuple[str, int, str]:
    """(host, port, user) for a result, also when the target could not be resolved."""
    if planned.host is not None:
        return planned.host.name, planned.host.port, planned.host.user
    t = planned.target
    return t.name, t.port or DEFAULT_PORT, t.user or default_user


def synthetic_result(
    request: Request,
    planned: PlannedHost[H],
    status: ResultStatus,
    *,
    collector: str,
    now: datetime,
    default_user: str,
    error: ErrorInfo | None = None,
) -> Result:
    """The final result of a host the collector decided about without running anything."""
    host, port, user = host_identity(planned, default_user)
    at = format_timestamp(now)
    return Result(
        request_id=request.request_id,
        host=host,
        port=port,
        user=user,
        attempt=1,
        status=status,
        exit_status=None,
        exit_signal=None,
        stdout="",
        stderr="",
        stdout_encoding="utf-8",
        stderr_encoding="utf-8",
        stdout_bytes=0,
        stderr_bytes=0,
        stdout_truncated=False,
        stderr_truncated=False,
        stdout_sha256=EMPTY_SHA256,
        stderr_sha256=EMPTY_SHA256,
        started_at=at,
        finished_at=at,
        duration_ms=0,
        error=error,
        collector=collector,
        labels=request.labels,
    )


# --- the runner --------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class FanOut(Generic[H]):
    """Runs a plan's hosts through an executor, `concurrency` at a time (a sliding window)."""

    executor: Executor[H]
    collector: str
    default_user: str = "root"
    clock: Callable[[], datetime] = _utcnow

    async def run(
        self,
        plan: Plan[H],
        on_result: Callable[[Result], Awaitable[None]],
        *,
        on_start: OnStart[H] | None = None,
        reserve: Callable[[list[H]], Awaitable[None]] | None = None,
        keep_starting: Callable[[], bool] | None = None,
        errors: int = 0,
        stop: Stop | None = None,
        budget_spent: Callable[[], bool] | None = None,
    ) -> bool:
        """Give every planned host exactly one final result, passed to `on_result` in order.

        `on_start(host, attempt)` is the "about to start" step (the ledger records `started`
        there): the executor awaits it right before the command is launched, once connected.
        If it raises HandedOver, or `keep_starting()` turns false, hosts not started yet get no
        result: they are left to the partition's next owner, and run returns True (handed
        over). Any other exception from it fails the request, not the host. `reserve(hosts)`,
        when given, is awaited for the hosts of a window before any of them is taken (the
        ledger commits their `started` marks ahead: collector.window). `stop` (a cancel) goes
        to the executor: once set, running commands are killed and hosts not started yet are
        skipped, each with a result saying why. `budget_spent()`, asked as each host's turn
        comes, says the request's error budget was spent elsewhere (its other shards, a drain):
        that host and the rest are skipped, running commands finish.
        """
        width = max(1, min(plan.request.concurrency, plan.total))
        hosts = _Hosts(plan.hosts, reserve, width)
        handed_over = False

        def handing_over() -> bool:
            return handed_over or (keep_starting is not None and not keep_starting())

        async def worker() -> None:
            nonlocal errors, handed_over
            # All workers pull from one source: as one host finishes, its worker takes the
            # next, so `concurrency` hosts run at any time (no waves).
            while not handing_over():
                try:
                    planned = await hosts.next()
                    if planned is None:
                        return
                    if handing_over():
                        handed_over = True  # this one was taken and not started
                        return
                    spent = budget_spent is not None and budget_spent()
                    result = await self._one(plan, planned, errors, on_start, stop, spent)
                except HandedOver:
                    handed_over = True
                    return
                if counts_as_error(result.status):
                    errors += 1
                await on_result(result)
            # Stopped starting hosts: handed over only if some were left unstarted.
            handed_over = handed_over or hosts.more()

        # Workers only raise when on_result does (results cannot be published): then the whole
        # request stops and is redelivered, which is what the TaskGroup's cancellation gives.
        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(width):
                    tg.create_task(worker())
        finally:
            await hosts.close()
        return handed_over

    async def _one(
        self,
        plan: Plan[H],
        planned: PlannedHost[H],
        errors: int,
        on_start: OnStart[H] | None,
        stop: Stop | None = None,
        spent: bool = False,
    ) -> Result:
        request = plan.request
        now = self.clock()
        decision = gate(
            now=now, expires_at=plan.expires_at, errors=errors, budget=plan.budget, spent=spent
        )
        if decision != "run":
            return self._synthetic(request, planned, decision, now)
        if planned.host is None:
            return self._synthetic(request, planned, "error", now, planned.error)
        host = planned.host
        try:
            return await self.executor.run(
                host, request, collector=self.collector, on_start=on_start, stop=stop
            )
        except (asyncio.CancelledError, HandedOver):
            raise
        except Exception as exc:  # the executor's contract says it never raises; be safe anyway
            log.exception(
                "executor raised instead of returning a result",
                extra={"request_id": request.request_id, "host": host.name},
            )
            error = ErrorInfo.from_exception(exc)
            return self._synthetic(request, planned, "error", self.clock(), error)

    def _synthetic(
        self,
        request: Request,
        planned: PlannedHost[H],
        status: ResultStatus,
        now: datetime,
        error: ErrorInfo | None = None,
    ) -> Result:
        return synthetic_result(
            request,
            planned,
            status,
            collector=self.collector,
            now=now,
            default_user=self.default_user,
            error=error,
        )


class _Hosts(Generic[H]):
    """The plan's hosts in order; through a StartWindow when their marks go out ahead."""

    def __init__(
        self,
        planned: Sequence[PlannedHost[H]],
        reserve: Callable[[list[H]], Awaitable[None]] | None,
        width: int,
    ) -> None:
        self._planned = planned
        self._next = 0
        self._window: StartWindow[PlannedHost[H]] | None = None
        # A full window marked ahead keeps workers fed and the hosts running spread as wide as
        # without the ledger. With half of it, requests running in step crowded twice as many
        # commands onto each host at once, past a pooled connection's channels: every host of
        # warm-500x50 got a second connection (0.78x the rate without the ledger; 1.0x with
        # this). The bound: a SIGKILL leaves at most `width` hosts marked and never launched
        # (outcome_unknown). One host at a time has nothing to overlap.
        ahead = width if width > 1 else 0
        if reserve is not None and ahead:

            async def reserve_hosts(batch: list[PlannedHost[H]]) -> None:
                await reserve([p.host for p in batch if p.host is not None])

            self._window = StartWindow(
                planned, reserve_hosts, ahead=ahead, needs_mark=lambda p: p.host is not None
            )

    async def next(self) -> PlannedHost[H] | None:
        if self._window is not None:
            return await self._window.next()
        if self._next >= len(self._planned):
            return None
        self._next += 1
        return self._planned[self._next - 1]

    def more(self) -> bool:
        if self._window is not None:
            return self._window.more()
        return self._next < len(self._planned)

    async def close(self) -> None:
        if self._window is not None:
            await self._window.close()
