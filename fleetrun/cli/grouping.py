"""Hosts grouped by identical output, like ClusterShell's clubak: one block per distinct answer.

Pure: takes results, returns groups and text. Failures come first, each with its reason, so the
line an operator needs is at the top of the screen, not under a thousand identical `ok` blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.outcome import NOT_STARTED
from fleetrun.cli.safetext import shown, shown_bytes
from schemas import RESULT_STATUSES, Result, ResultStatus, fold

# Order of blocks: what needs attention first, plain success last.
_SEVERITY: dict[ResultStatus, int] = {
    "error": 0,
    "host_key_mismatch": 1,
    "auth_failed": 2,
    "unreachable": 3,
    "timeout": 4,
    "failed": 5,
    "expired": 6,
    "skipped": 7,
    "ok": 8,
}
assert set(_SEVERITY) == set(RESULT_STATUSES)


@dataclass(frozen=True, slots=True)
class Group:
    """Hosts whose results are the same in every way a person reads them."""

    hosts: tuple[str, ...]
    status: ResultStatus
    exit_status: int | None
    exit_signal: str | None
    reason: str | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool

    @property
    def folded(self) -> str:
        """`web[01-03,07]`."""
        return fold(self.hosts)


# Why a host has a status the collector gives without running anything, when no error says more
# (a cancel's `skipped` carries its reason in `error`; the error budget's and expiry's do not).
_DECIDED_WITHOUT_RUNNING: dict[ResultStatus, str] = {
    "skipped": "not started: the error budget (max_errors) was spent before this host's turn",
    "expired": "not started: the request had expired (expires_at) before this host's turn",
}


def reason_of(result: Result) -> str | None:
    """One line saying why a host is not `ok` (None when it is)."""
    if result.status == "ok":
        return None
    if result.error is not None:
        if result.error.type == NOT_STARTED:  # its message already says "not started: why"
            return result.error.message
        return f"{result.error.type}: {result.error.message}"
    if result.exit_signal:
        return f"killed by signal {result.exit_signal}"
    if result.exit_status is not None:
        return f"exit status {result.exit_status}"
    return _DECIDED_WITHOUT_RUNNING.get(result.status, result.status)


def hosts_count(n: int) -> str:
    """`1 host`, `3 hosts`."""
    return f"{n} host{'s' if n != 1 else ''}"


def group_results(results: Iterable[Result]) -> list[Group]:
    """Group by (status, exit, reason, full output digests); failures first, then bigger groups."""
    buckets: dict[tuple[object, ...], list[Result]] = {}
    for r in results:
        key = (
            r.status,
            r.exit_status,
            r.exit_signal,
            reason_of(r),
            r.stdout_sha256,
            r.stderr_sha256,
            r.stdout_bytes,
            r.stderr_bytes,
        )
        buckets.setdefault(key, []).append(r)
    groups = []
    for members in buckets.values():
        first = members[0]
        groups.append(
            Group(
                hosts=tuple(sorted({m.host for m in members})),
                status=first.status,
                exit_status=first.exit_status,
                exit_signal=first.exit_signal,
                reason=reason_of(first),
                stdout=first.stdout_data,
                stderr=first.stderr_data,
                stdout_truncated=first.stdout_truncated,
                stderr_truncated=first.stderr_truncated,
            )
        )
    groups.sort(key=lambda g: (_SEVERITY[g.status], -len(g.hosts), g.hosts))
    return groups


def _text(data: bytes, raw: bool) -> str:
    if raw:  # the host's bytes as they are; surrogateescape carries undecodable ones to stdout
        return data.decode("utf-8", errors="surrogateescape").rstrip("\n")
    # Shown, not stored: undecodable bytes become U+FFFD and controls are escaped (a host must
    # not retitle or clear the operator's terminal); the stored result keeps them exactly.
    return shown_bytes(data).rstrip("\n")


def render_groups(groups: Sequence[Group], *, raw: bool = False) -> str:
    """The grouped report as plain text; `raw` leaves the hosts' output unescaped."""
    blocks = []
    for g in groups:
        header = f"{g.folded} ({len(g.hosts)}) {g.status}"
        if g.reason and g.status != "ok":
            header += f": {g.reason}"
        header = shown(header)  # an error message can quote what a host sent
        rule = "-" * min(max(len(header), 15), 100)
        lines = [rule, header, rule]
        if g.stdout:
            lines.append(_text(g.stdout, raw))
        if g.stdout_truncated:
            lines.append("[stdout truncated: head and tail shown]")
        if g.stderr:
            lines.append("stderr: " + _text(g.stderr, raw).replace("\n", "\nstderr: "))
        if g.stderr_truncated:
            lines.append("[stderr truncated: head and tail shown]")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def summary_line(results: Sequence[Result]) -> str:
    """`3 hosts: 2 ok, 1 failed`."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = [f"{counts[s]} {s}" for s in RESULT_STATUSES if counts.get(s)]
    return f"{hosts_count(len(results))}: {', '.join(parts) or 'none'}"
