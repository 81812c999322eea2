"""How SSH failures and command exits map to result statuses: one table, in one place.

| what happened                                                  | status            |
|----------------------------------------------------------------|-------------------|
| DNS failure, TCP refused / unreachable / reset, connect timeout | unreachable       |
| SSH closed before login (e.g. sshd's MaxStartups), jump host    |                   |
| could not open a tunnel to the target (connect failed)          | unreachable       |
| every credential refused (asyncssh.PermissionDenied)            | auth_failed       |
| host key unknown, changed or revoked (HostKeyNotVerifiable)     | host_key_mismatch |
| no CA signature, no host-key type in common (seen as a reset    | host_key_mismatch |
|   during key exchange; collector.hostkeys names each reason)    |                   |
| command ran past timeout_s (then killed)                        | timeout           |
| exit status 0                                                   | ok                |
| non-zero exit status, or killed by a signal                     | failed            |
| killed on purpose: the caller's Stop (error.type `killed`)      | error             |
| the caller's Stop came before the command was launched          | skipped           |
|   (error.type `not_started`)                                    |                   |
| anything else (key files, protocol errors, lost mid-command...) | error             |

Only `unreachable` from the connection phase is retried (see fleetrun.backoff).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import asyncssh

from collector.capture import Captured, StreamCapture
from collector.command import Finished
from schemas import ErrorInfo, Request, Result, ResultStatus, encode_output, format_timestamp

if TYPE_CHECKING:
    from collector.inventory import HostSpec

_EMPTY: Final = StreamCapture(0).result()
KILLED: Final = "killed"  # error.type of a command stopped on purpose (collector.stop)
NOT_STARTED: Final = "not_started"  # error.type of a host stopped before its command started

# Socket errors that mean "could not reach the host" (rather than a local problem).
_UNREACHABLE_ERRNOS: Final = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
        errno.EADDRNOTAVAIL,
    }
)


class ConnectTimeout(TimeoutError):
    """No SSH connection (TCP + handshake + login) within the request's connect_timeout_s."""


class PoolTimeout(TimeoutError):
    """No connection slot freed up within the deadline (every pooled connection busy)."""


class JumpError(Exception):
    """Reaching the target through its jump host failed; `cause` says how."""

    def __init__(self, jump: str, cause: BaseException) -> None:
        super().__init__(f"via jump host {jump}: {type(cause).__name__}: {cause}")
        self.jump = jump
        self.cause = cause


def classify_connect_error(exc: BaseException) -> ResultStatus:
    """The status for an exception raised while connecting and logging in."""
    if isinstance(exc, JumpError):
        return classify_connect_error(exc.cause)
    if isinstance(exc, PoolTimeout):
        return "error"  # our own congestion, not the host's fault
    if isinstance(exc, asyncssh.PermissionDenied):
        return "auth_failed"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return "host_key_mismatch"
    if isinstance(exc, TimeoutError | socket.gaierror | asyncssh.ConnectionLost):
        return "unreachable"
    if isinstance(exc, asyncssh.ChannelOpenError):
        # A jump host could not open the TCP connection to the target.
        return "unreachable" if exc.code == asyncssh.OPEN_CONNECT_FAILED else "error"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return "unreachable"
    return "error"


def classify_exit(exit_status: int | None, exit_signal: str | None) -> ResultStatus:
    """The status of a command that ended on its own (not by our timeout)."""
    if exit_signal is not None:
        return "failed"
    if exit_status is None:
        return "error"  # the channel closed without an exit status: sshd or the link went away
    return "ok" if exit_status == 0 else "failed"


def error_info(exc: BaseException, *, context: str = "") -> ErrorInfo:
    """ErrorInfo for `exc`, its message prefixed with `context` (e.g. 'via jump host b')."""
    type_name = type(exc).__name__
    message = str(exc).strip() or _DEFAULT_MESSAGES.get(type_name, type_name)
    if isinstance(exc, OSError) and exc.errno and not isinstance(exc, socket.gaierror):
        # asyncio words refusals as "[Errno 111] Connect call failed (addr)": say what it means.
        reason, detail = os.strerror(exc.errno), exc.strerror or message
        message = reason if detail == reason else f"{reason}: {detail}"
    if context:
        message = f"{context}: {message}"
    return ErrorInfo.bounded(type_name, message)


_DEFAULT_MESSAGES: Final = {
    "TimeoutError": "timed out",
    "ConnectTimeout": "timed out",
    "PoolTimeout": "no SSH connection slot became free in time",
    "CancelledError": "cancelled",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's outcome on one host, before it becomes a Result."""

    status: ResultStatus
    error: ErrorInfo | None = None
    finished: Finished | None = None
    retry: bool = False  # unreachable before anything started: another attempt may help


def connect_error(host: HostSpec, exc: BaseException) -> ErrorInfo:
    """ErrorInfo for a connection failure; names the jump host when one is involved."""
    if host.jump is None or isinstance(exc, JumpError):
        return error_info(exc)
    return error_info(exc, context=f"{host.name} via jump host {host.jump.name}")


def command_outcome(finished: Finished, timeout_s: float) -> Outcome:
    """The outcome of a command that started: exit, signal, timeout or a lost connection."""
    if finished.timed_out:
        message = f"still running after timeout_s={timeout_s:g}; {finished.kill_note}"
        return Outcome("timeout", ErrorInfo(type="CommandTimeout", message=message), finished)
    if finished.stop_reason is not None:
        message = f"killed: {finished.stop_reason}; {finished.kill_note}"
        return Outcome("error", ErrorInfo.bounded(KILLED, message), finished)
    status = classify_exit(finished.exit_status, finished.exit_signal)
    error = None
    if status == "error":
        cause = finished.lost or asyncssh.ConnectionLost("channel closed without an exit status")
        error = error_info(cause, context="the command's connection ended before it exited")
    return Outcome(status, error, finished)


def not_started(reason: str) -> Outcome:
    """The outcome of a host whose Stop was set before its command was launched."""
    return Outcome("skipped", ErrorInfo.bounded(NOT_STARTED, f"not started: {reason}"))


def build_result(
    host: HostSpec,
    request: Request,
    collector: str,
    attempt: int,
    outcome: Outcome,
    started_at: datetime,
    t0: float,
) -> Result:
    """The Result record for `outcome`; `t0` is the monotonic clock at `started_at`."""
    f = outcome.finished
    out: Captured = f.stdout if f else _EMPTY
    err: Captured = f.stderr if f else _EMPTY
    stdout, stdout_encoding = encode_output(out.data)
    stderr, stderr_encoding = encode_output(err.data)
    return Result(
        request_id=request.request_id,
        host=host.name,
        port=host.port,
        user=host.user,
        attempt=attempt,
        status=outcome.status,
        # The contract: exit_status only for a command that exited on its own.
        exit_status=f.exit_status if f and outcome.status in ("ok", "failed") else None,
        exit_signal=f.exit_signal if f else None,
        stdout=stdout,
        stderr=stderr,
        stdout_encoding=stdout_encoding,
        stderr_encoding=stderr_encoding,
        stdout_bytes=out.total_bytes,
        stderr_bytes=err.total_bytes,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        stdout_sha256=out.sha256,
        stderr_sha256=err.sha256,
        started_at=format_timestamp(started_at),
        finished_at=format_timestamp(datetime.now(UTC)),
        duration_ms=int((time.monotonic() - t0) * 1000),
        error=outcome.error,
        collector=collector,
        labels=request.labels,
    )
