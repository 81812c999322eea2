"""One command on one SSH connection: open the session, capture output, enforce the timeout.

No pty: stdout and stderr stay separate and byte-exact (a pty would merge them and turn LF into
CRLF), and stdin is closed at once (`ssh -n`), so a command waiting for input sees EOF instead of
hanging until its timeout.

Killing on timeout, verified against OpenSSH 9.2 (tests/integration/test_ssh_executor.py):
closing the channel does NOT stop a command started without a pty. sshd does not even confirm
the close while the command runs, and `sleep 600` survives the whole connection closing. The
SSH "signal" channel request does stop it: OpenSSH ≥ 7.9 answers it with killpg() on the
session's process group, which takes the shell and everything it started in that group. So a
command past its timeout gets TERM, then KILL after the grace period, then its channel is
closed; the result is `timeout` with the output captured so far. Processes that left the group
(setsid, daemons) are out of reach, as for any SSH client. A server that ignores the signal
request (older than 7.9) never confirms the close either: the channel is then reported
"wedged" and the executor drops the whole connection rather than reuse it (the remote process
may survive; only a pty would make sshd send SIGHUP, at the price of merged, CRLF-mangled
output, so it is not used).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import asyncssh

from collector.capture import Captured, StreamCapture


class CommandSession(asyncssh.SSHClientSession[bytes]):
    """Receives one command's output straight into bounded captures (no reader buffers)."""

    def __init__(self, max_output_bytes: int) -> None:
        self.stdout = StreamCapture(max_output_bytes)
        self.stderr = StreamCapture(max_output_bytes)
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.lost: Exception | None = None
        self.closed = asyncio.Event()

    @property
    def opened(self) -> bool:
        """The server confirmed the channel (the command may have started from here on)."""
        return self.chan is not None

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self.chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr.feed(data)
        else:
            self.stdout.feed(data)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.closed.set()

    def abort(self) -> None:
        """Kill the remote process group and close the channel without waiting (cancellation)."""
        chan = self.chan
        if chan is None:
            return
        with contextlib.suppress(Exception):  # a dying connection may refuse: nothing to add
            chan.send_signal("KILL")
        with contextlib.suppress(Exception):
            chan.close()


@dataclass(frozen=True, slots=True)
class Finished:
    """How the command ended (or was ended)."""

    exit_status: int | None
    exit_signal: str | None
    stdout: Captured
    stderr: Captured
    timed_out: bool
    kill_note: str  # what the timeout handling did, for the result's error message
    lost: Exception | None  # set when the connection died under the command
    wedged: bool  # the channel never closed: the connection should not be reused


async def open_session(
    conn: asyncssh.SSHClientConnection,
    session: CommandSession,
    command: str,
    env: Mapping[str, str],
    timeout_s: float,
) -> None:
    """Open a session channel and start `command` on it, within `timeout_s`."""
    env_arg: dict[bytes | str, bytes | str] = dict(env.items())
    async with asyncio.timeout(timeout_s):
        chan, _ = await conn.create_session(
            lambda: session,
            command,
            env=env_arg if env_arg else (),
            send_env=None,  # never leak the collector's own environment
            request_pty=False,
            x11_forwarding=False,
            encoding=None,
        )
    chan.write_eof()


async def wait_command(session: CommandSession, timeout_s: float, grace_s: float) -> Finished:
    """Wait for the command to end; past `timeout_s`, TERM, then KILL, then close the channel."""
    timed_out = False
    note = ""
    try:
        async with asyncio.timeout(timeout_s):
            await session.closed.wait()
    except TimeoutError:
        timed_out = True
        note = await _kill(session, grace_s)
    return Finished(
        exit_status=session.exit_status,
        exit_signal=session.exit_signal,
        stdout=session.stdout.result(),
        stderr=session.stderr.result(),
        timed_out=timed_out,
        kill_note=note,
        lost=session.lost,
        wedged=not session.closed.is_set(),
    )


async def _kill(session: CommandSession, grace_s: float) -> str:
    chan = session.chan
    assert chan is not None  # only called once the session is open
    for signal in ("TERM", "KILL"):
        with contextlib.suppress(Exception):
            chan.send_signal(signal)
        if await _closed_within(session, grace_s):
            return f"sent {signal}: the command ended"
    chan.close()
    if await _closed_within(session, grace_s):
        return "sent TERM and KILL, then closed the channel (the server ignored the signals)"
    return "sent TERM and KILL and closed the channel; the server never confirmed"


async def _closed_within(session: CommandSession, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await session.closed.wait()
    except TimeoutError:
        return False
    return True
