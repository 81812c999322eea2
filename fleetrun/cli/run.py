"""`fleetrun run`: build a request, submit it, and with --wait follow it to a grouped report."""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fleetrun.cli.errors import (
    EXIT_HOSTS_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    EXIT_WAIT_TIMEOUT,
    CliError,
)
from fleetrun.cli.follow import Follower
from fleetrun.cli.follow import Progress as RequestProgress
from fleetrun.cli.grouping import group_results, hosts_count, render_groups, summary_line
from fleetrun.cli.safetext import shown, write_out
from fleetrun.cli.settings import CliSettings
from schemas import (
    RESULT_STATUSES,
    Request,
    Result,
    SchemaError,
    StatusCounts,
    check_targets,
    encode,
    expand_targets,
    format_timestamp,
    known,
    parse_timestamp,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(text: str, option: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d` → seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise CliError(f"{option} {text!r}: expected a duration like 30s, 15m or 2h")
    return float(match.group(1)) * _UNITS_S[match.group(2) or "s"]


def parse_wait_timeout_s(text: str) -> float:
    """--wait-timeout: a positive duration (waiting has an end; there is no "forever")."""
    seconds = parse_duration_s(text, "--wait-timeout")
    if seconds <= 0:
        raise CliError(
            f"--wait-timeout {text!r}: expected a positive duration like 30s or 2h "
            "(without --wait, `run` does not wait at all)"
        )
    return seconds


def parse_pairs(items: list[str], option: str) -> dict[str, str]:
    """`NAME=value` options into a mapping; the value may contain '='."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"{option} {item!r}: expected NAME=value")
        out[name] = value
    return out


def parse_max_errors(text: str | None) -> int | str | None:
    """`3` (hosts) or `10%` (of the targets); None means no error budget."""
    if text is None:
        return None
    text = text.strip()
    if text.endswith("%"):
        return text
    try:
        return int(text)
    except ValueError:
        raise CliError(
            f"--max-errors {text!r}: expected a host count like 3 or a percent like 10%"
        ) from None


# A group removed (`!@g`) or intersected (`&@g`) can shrink the hosts by any amount, and the CLI
# does not know the collector's groups: then only the collector can count.
_GROUP_NARROWS = re.compile(r"[!&]@")


def check_targets_total(targets: list[str]) -> None:
    """Refuse `-t` options that together pass the per-request cap, as one `-t` is refused.

    Groups are the collector's (its inventory), so they count as empty here: what is counted is
    a lower bound of what the collector will expand, and a request refused here would be
    rejected there too. When a group could shrink the set, nothing is refused here.
    """
    if any(_GROUP_NARROWS.search(t) for t in targets):
        return
    expand_targets(targets, lambda _group: (), allow_empty=True)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What `fleetrun run` was asked, before it becomes a request."""

    command: str | None
    targets: list[str]
    timeout: str = "60s"
    connect_timeout: str = "10s"
    concurrency: int | None = None
    max_errors: str | None = None
    max_output_bytes: int | None = None
    retries: int | None = None
    env: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    expires_in: str | None = None
    request_id: str | None = None
    template: str | None = None
    params: tuple[str, ...] = ()


def build_request(opts: RunOptions, principal: str) -> Request:
    """A validated request, or a CliError naming the option or field that is wrong."""
    if not opts.targets:
        raise CliError("no targets: pass -t/--target, e.g. -t 'web[01-20]' or -t @group")
    try:
        check_targets(opts.targets)
        check_targets_total(opts.targets)
    except SchemaError as exc:
        raise CliError(f"-t {exc}") from None
    extra: dict[str, object] = {
        "timeout_s": parse_duration_s(opts.timeout, "--timeout"),
        "connect_timeout_s": parse_duration_s(opts.connect_timeout, "--connect-timeout"),
        "env": parse_pairs(list(opts.env), "--env"),
        "labels": parse_pairs(list(opts.labels), "--label"),
        "max_errors": parse_max_errors(opts.max_errors),
    }
    for name in ("concurrency", "max_output_bytes", "retries"):
        value = getattr(opts, name)
        if value is not None:
            extra[name] = value
    if (opts.command is None) == (opts.template is None):
        raise CliError("give either COMMAND or --template NAME (with -p name=value), not both")
    if opts.template is not None:
        extra["template"] = opts.template
        if opts.params:
            extra["params"] = parse_pairs(list(opts.params), "-p/--param")
    elif opts.params:
        raise CliError("-p/--param goes with --template")
    if opts.request_id is not None:
        from fleetrun.cli.query import parse_request_id

        extra["request_id"] = parse_request_id(opts.request_id)
    try:
        request = Request.new(
            principal=principal,
            command=msgspec.UNSET if opts.command is None else opts.command,
            targets=opts.targets,
            **extra,
        )
        if opts.expires_in is not None:
            ttl = parse_duration_s(opts.expires_in, "--expires-in")
            expires_at = parse_timestamp(request.submitted_at) + timedelta(seconds=ttl)
            request = msgspec.structs.replace(request, expires_at=format_timestamp(expires_at))
        encode(request)  # the contract's own checks: limits, env names, bounds
    except SchemaError as exc:
        raise CliError(f"request is not valid: {exc}") from None
    return request


# `run --wait` without --wait-timeout waits as long as the request can take once it runs (see
# `default_wait_s`), and never less than this: a collector may be busy with other requests.
DEFAULT_WAIT_FLOOR_S: Final = 600.0
# Beyond the request's own deadlines: queueing behind other requests, publishing, reading.
WAIT_MARGIN_S: Final = 60.0


def default_wait_s(request: Request, targets_total: int | None) -> float:
    """How long `run --wait` waits unless told: every host's worst case, in waves of the
    request's concurrency, plus a margin; at least DEFAULT_WAIT_FLOOR_S. `targets_total` comes
    with the accepted status; before it, one wave is assumed."""
    waves = math.ceil((targets_total or 1) / request.concurrency)
    worst_host_s = request.connect_timeout_s * (request.retries + 1) + request.timeout_s
    return max(DEFAULT_WAIT_FLOOR_S, waves * worst_host_s + WAIT_MARGIN_S)


@dataclass(frozen=True, slots=True)
class WaitLimit:
    """When `run --wait` stops waiting: --wait-timeout after the start, or the default."""

    request: Request
    started: float  # time.monotonic() when waiting began
    fixed_s: float | None = None  # --wait-timeout

    def seconds(self, progress: RequestProgress) -> float:
        if self.fixed_s is not None:
            return self.fixed_s
        return default_wait_s(self.request, progress.total)

    def deadline(self, progress: RequestProgress) -> float:
        """The monotonic time to stop at; the default one moves once the total is known."""
        return self.started + self.seconds(progress)


def exit_code_for(progress: RequestProgress) -> int:
    """0 only if every host is ok; 3 when rejected; 4 when waiting gave up first.

    Once completed, its counts decide as much as the results read: a host whose result was not
    read (see Follower.follow) still makes the exit code non-zero when the counts say it failed.
    """
    if progress.rejected is not None:
        return EXIT_REJECTED
    if progress.completed is None:
        return EXIT_WAIT_TIMEOUT
    counts = known(progress.completed.counts)
    counted_ok = counts is None or counts.ok == counts.total
    results_ok = all(r.status == "ok" for r in progress.results.values())
    return EXIT_OK if counted_ok and results_ok else EXIT_HOSTS_FAILED


class ProgressView:
    """A live bar on stderr: done/total and counts per status (quiet when not a terminal)."""

    def __init__(self, console: Console, request_id: str) -> None:
        self.console = console
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[by_status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.bar.add_task(
            request_id[:8], total=None, by_status="waiting for a collector"
        )

    def __enter__(self) -> ProgressView:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(self, progress: RequestProgress, _result: Result | None) -> None:
        counts = dict.fromkeys(RESULT_STATUSES, 0)
        for r in progress.results.values():
            counts[r.status] += 1
        by_status = " ".join(f"{s}={n}" for s, n in counts.items() if n) or "accepted"
        self.bar.update(
            self.task, total=progress.total, completed=len(progress.results), by_status=by_status
        )


async def run_and_wait(
    settings: CliSettings,
    request: Request,
    *,
    wait: bool,
    wait_timeout_s: float | None,
    as_json: bool,
    console: Console,
    follow: bool = False,
    raw: bool = False,
) -> int:
    """Submit; with `wait`, follow to completion and print the report. Returns the exit code.
    With `follow` (the request streams its output), print `host: line` as lines come; `raw`
    prints the hosts' output in the report unescaped."""
    from fleetrun.cli.follow import submit
    from fleetrun.cli.live import LinePrinter, write_to_std

    if not wait and not follow:
        await submit(settings, request)
        print(request.request_id)
        return EXIT_OK
    follower = Follower(settings)
    printer = None
    if follow and not as_json:
        printer = LinePrinter(write_to_std, colour=sys.stdout.isatty() and not console.no_color)
        follower.on_output = printer.add
    await follower.start()  # before submitting: nothing the collector publishes is missed
    try:
        await follower.submit(request)
        console.print(f"request {request.request_id} submitted", style="dim")
        progress = RequestProgress(request.request_id)
        limit = WaitLimit(request, time.monotonic(), wait_timeout_s)
        if as_json:

            def emit(_p: RequestProgress, result: Result | None) -> None:
                if result is not None:
                    sys.stdout.buffer.write(encode(result) + b"\n")
                    sys.stdout.flush()

            await follower.follow(progress, emit, deadline=limit.deadline)
        elif printer is not None:  # lines instead of a progress bar
            await follower.follow(progress, lambda _p, _r: None, deadline=limit.deadline)
            printer.flush()
            note = printer.dropped_note()
            if note:
                console.print(note, style="yellow", highlight=False)
        else:
            with ProgressView(console, request.request_id) as view:
                await follower.follow(progress, view.update, deadline=limit.deadline)
    finally:
        await follower.stop()
    code = exit_code_for(progress)
    if not as_json:
        print_report(console, request, progress, code, limit, raw=raw)
    elif progress.rejected is not None:
        console.print(
            f"rejected: {shown(str(known(progress.rejected.reason) or 'no reason given'))}",
            style="red",
            markup=False,
        )
    else:
        _notes(console, request, progress, code, limit)
    return code


def print_report(
    console: Console,
    request: Request,
    progress: RequestProgress,
    code: int,
    limit: WaitLimit,
    *,
    raw: bool = False,
) -> None:
    if progress.rejected is not None:
        reason = shown(
            str(known(progress.rejected.reason) or "no reason given")
        )  # it can quote the request's own text
        console.print(f"request {request.request_id} rejected: {reason}", markup=False)
        return
    results = list(progress.results.values())
    counts = None if progress.completed is None else known(progress.completed.counts)
    if counts is not None and progress.missing:
        # The collector's counts are the request's outcome; the results read are a part of it.
        line = _summary_of(counts)
    else:
        line = summary_line(results) + (" so far" if code == EXIT_WAIT_TIMEOUT else "")
    # The report and its summary are the command's output (stdout, one stream to pipe or
    # redirect); progress and notes are diagnostics (stderr).
    out = Console(file=sys.stdout, soft_wrap=True)
    if results:
        write_out(render_groups(group_results(results), raw=raw))  # not through rich
    out.print(line, style="bold green" if code == EXIT_OK else "bold red", highlight=False)
    _notes(console, request, progress, code, limit)


def _notes(
    console: Console, request: Request, progress: RequestProgress, code: int, limit: WaitLimit
) -> None:
    """Why the wait ended early, or why results are missing, and where to look next."""
    rid = request.request_id
    if code == EXIT_WAIT_TIMEOUT:
        waited = _duration(limit.seconds(progress))
        if not progress.accepted:
            console.print(
                f"no collector accepted request {rid} within {waited}: is a collector running "
                f"on these topics? The request stays queued: fleetrun status {rid}",
                style="red",
                highlight=False,
            )
        else:
            why = (
                "--wait-timeout"
                if limit.fixed_s is not None
                else "this request's default; --wait-timeout sets another"
            )
            console.print(
                f"stopped waiting after {waited} ({why}); the request continues: "
                f"fleetrun status {rid}",
                style="red",
                highlight=False,
            )
    elif progress.missing:
        console.print(
            f"{progress.missing} of {progress.expected} results counted by the collector were "
            f"not read here; stored ones: fleetrun results {rid}",
            style="yellow",
            highlight=False,
        )


def _summary_of(counts: StatusCounts) -> str:
    """`3 hosts: 2 ok, 1 failed` from a completed status's counts."""
    parts = [f"{n} {s}" for s, n in counts.as_dict().items() if n]
    return f"{hosts_count(counts.total)}: {', '.join(parts) or 'none'}"


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


__all__ = [
    "EXIT_USAGE",
    "RunOptions",
    "WaitLimit",
    "build_request",
    "default_wait_s",
    "exit_code_for",
    "run_and_wait",
]
