"""How SSH failures and command exits map to result statuses: one table, in one place.

| what happened                                                  | status            |
|----------------------------------------------------------------|-------------------|
| DNS failure, TCP refused / unreachable / reset, connect timeout | unreachable       |
| SSH closed before login (e.g. sshd's MaxStartups), jump host    |                   |
| could not open a tunnel to the target (connect failed)          | unreachable       |
| every credential refused (asyncssh.PermissionDenied)            | auth_failed       |
| host key unknown, changed or revoked (HostKeyNotVerifiable)     | host_key_mismatch |
| command ran past timeout_s (then killed)                        | timeout           |
| exit status 0                                                   | ok                |
| non-zero exit status, or killed by a signal                     | failed            |
| anything else (key files, protocol errors, lost mid-command...) | error             |

Only `unreachable` from the connection phase is retried (see collector.backoff).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Final

import asyncssh

from schemas import ErrorInfo, ResultStatus, limits

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
        message = f"{os.strerror(exc.errno)}: {exc.strerror or message}"
    if context:
        message = f"{context}: {message}"
    message = message.replace("\x00", "\\0")
    if len(message) > limits.MAX_ERROR_MESSAGE_CHARS:
        message = message[: limits.MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return ErrorInfo(type=type_name[: limits.MAX_ERROR_TYPE_CHARS], message=message)


_DEFAULT_MESSAGES: Final = {
    "TimeoutError": "timed out",
    "ConnectTimeout": "timed out",
    "PoolTimeout": "no SSH connection slot became free in time",
    "CancelledError": "cancelled",
}
