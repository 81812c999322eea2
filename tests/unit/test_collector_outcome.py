"""The status table (collector.outcome) and the retry backoff (fleetrun.backoff)."""

from __future__ import annotations

import errno
import socket

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.outcome import (
    ConnectTimeout,
    JumpError,
    PoolTimeout,
    classify_connect_error,
    classify_exit,
    error_info,
)
from collector.pool import PoolClosed
from collector.sshfiles import KeyLoadError
from fleetrun.runtime.backoff import backoff_delay
from schemas import ResultStatus, limits


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "unreachable"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "unreachable"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "unreachable"),
        (TimeoutError(), "unreachable"),
        (ConnectTimeout("no SSH connection"), "unreachable"),
        (asyncssh.ConnectionLost("Connection lost"), "unreachable"),
        (asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "refused"), "unreachable"),
        (
            asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "no tcp fwd"),
            "error",
        ),
        (asyncssh.PermissionDenied("Permission denied"), "auth_failed"),
        (asyncssh.HostKeyNotVerifiable("Host key is not trusted"), "host_key_mismatch"),
        (asyncssh.KeyExchangeFailed("no matching kex"), "error"),
        (asyncssh.ProtocolError("bad packet"), "error"),
        (FileNotFoundError(errno.ENOENT, "known_hosts /x: No such file"), "error"),
        (KeyLoadError("client key /x: No such file or directory"), "error"),
        (PoolTimeout("all busy"), "error"),
        (PoolClosed("shutting down"), "error"),
        (ValueError("anything else"), "error"),
        (JumpError("bastion", TimeoutError()), "unreachable"),
        (JumpError("bastion", asyncssh.PermissionDenied("no")), "auth_failed"),
        (JumpError("bastion", asyncssh.HostKeyNotVerifiable("x")), "host_key_mismatch"),
    ],
)
def test_connect_errors(exc: BaseException, status: ResultStatus) -> None:
    assert classify_connect_error(exc) == status


@pytest.mark.parametrize(
    ("exit_status", "exit_signal", "status"),
    [
        (0, None, "ok"),
        (1, None, "failed"),
        (255, None, "failed"),
        (2**32 - 1, None, "failed"),
        (None, "TERM", "failed"),
        (None, "KILL", "failed"),
        (-1, "SEGV", "failed"),
        (None, None, "error"),
    ],
)
def test_exits(exit_status: int | None, exit_signal: str | None, status: ResultStatus) -> None:
    assert classify_exit(exit_status, exit_signal) == status


def test_error_info_names_the_type_and_context() -> None:
    info = error_info(asyncssh.PermissionDenied("Permission denied"), context="via bastion")
    assert info.type == "PermissionDenied"
    assert info.message == "via bastion: Permission denied"
    assert error_info(TimeoutError()).message == "timed out"


def test_error_info_stays_within_the_contract() -> None:
    info = error_info(ValueError("x\x00" * limits.MAX_ERROR_MESSAGE_CHARS))
    assert "\x00" not in info.message
    assert len(info.message) == limits.MAX_ERROR_MESSAGE_CHARS


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (1, 0.0, 0.5),  # base 1 s: between 0.5 and 1
        (1, 1.0, 1.0),
        (2, 0.0, 1.0),  # doubled
        (3, 1.0, 4.0),
        (4, 1.0, 8.0),
        (5, 1.0, 15.0),  # capped at 15
        (50, 0.5, 11.25),
        (10_000, 1.0, 15.0),  # no overflow
    ],
)
def test_backoff_table(attempt: int, jitter: float, expected: float) -> None:
    assert backoff_delay(attempt, 1.0, 15.0, jitter) == pytest.approx(expected)


@given(
    attempt=st.integers(1, 200),
    base=st.floats(0, 100),
    cap=st.floats(0, 1000),
    jitter=st.floats(0, 1),
)
def test_backoff_bounds(attempt: int, base: float, cap: float, jitter: float) -> None:
    delay = backoff_delay(attempt, base, cap, jitter)
    ceiling = min(cap, base * 2 ** min(attempt - 1, 64))
    assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9


def test_backoff_grows_until_the_cap() -> None:
    delays = [backoff_delay(n, 0.1, 5.0, 1.0) for n in range(1, 10)]
    assert delays == sorted(delays)
    assert delays[-1] == 5.0


@pytest.mark.parametrize(("attempt", "jitter"), [(0, 0.5), (1, -0.1), (1, 1.5)])
def test_backoff_rejects_nonsense(attempt: int, jitter: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        backoff_delay(attempt, 1.0, 15.0, jitter)


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "Connection refused"),
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('10.0.0.1', 22)"),
            "Connection refused: Connect call failed ('10.0.0.1', 22)",
        ),
    ],
)
def test_os_errors_say_what_they_mean_once(exc: OSError, message: str) -> None:
    assert error_info(exc).message == message
