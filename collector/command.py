"""One command on one SSH connection: open the session, capture output, stop it when told.

No pty: stdout and stderr stay separate and byte-exact (a pty would merge them and turn LF into
CRLF), and the command's stdin is /dev/null (`ssh -n`), so a command waiting for input sees EOF
instead of hanging until its timeout.

Stopping, verified against OpenSSH 9.2 (tests/integration/test_ssh_executor.py and
test_ssh_orphans.py): closing the channel does NOT stop a command started without a pty, nor
does the whole connection closing, and the SSH "signal" request reaches the process group only
while the command's first process lives, and only on servers that honour it. So the command
runs beside a watchdog (collector.watchdog) that holds the channel's stdin: it kills the
command's process group when asked (`STOP_LINE` on stdin) and when the channel or the
connection goes away first — a pool close, a collector crash, a cut link.

`stop_command` is one sequence for a timeout, a `Stop` and a cancellation: ask the watchdog
(TERM to the group, KILL after the grace), then send KILL as an SSH signal after
`grace_s`, then close the channel after `grace_s` again (the watchdog sees EOF). A channel
the server never confirms closed is reported "wedged": the executor drops the whole connection
rather than reuse it. Without the watchdog (`watchdog=False`: hosts without a POSIX shell) the
first step is a TERM signal, as SSH clients do, and a lost connection leaves the command running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import asyncssh

from collector.capture import Captured, StreamCapture
from collector.live import HostStream
from collector.stop import Stop
from collector.watchdog import STOP_LINE, wrap


class CommandSession(asyncssh.SSHClientSession[bytes]):
    """Receives one command's output straight into bounded captures (no reader buffers)."""

    def __init__(
        self, max_output_bytes: int, *, watchdog: bool = True, live: HostStream | None = None
    ) -> None:
        self.stdout = StreamCapture(max_output_bytes)
        self.stderr = StreamCapture(max_output_bytes)
        self.watchdog = watchdog
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.lost: Exception | None = None
        self.closed = asyncio.Event()
        self.wake = asyncio.Event()  # closed, or a Stop was set: wait_command looks again
        self.live = live  # set when the request streams its output (collector.live)

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
        if self.live is not None:
            self.live.feed(datatype == asyncssh.EXTENDED_DATA_STDERR, data)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal

    def connection_lost(self, exc: Exception | None) -> None:
        if self.live is not None:
            self.live.end()
        self.lost = exc
        self.closed.set()
        self.wake.set()

    def ask_stop(self) -> str:
        """First step of stopping: the watchdog's TERM to the group, or a TERM signal; what."""
        chan = self.chan
        assert chan is not None  # only called once the session is open
        with contextlib.suppress(Exception):  # a closing channel or connection refuses
            if self.watchdog:
                chan.write(STOP_LINE)
                return "sent TERM to the process group"
            chan.send_signal("TERM")
        return "sent TERM"

    def abort(self) -> None:
        """Stop the command and close the channel without waiting (nothing else can be done)."""
        chan = self.chan
        if chan is None:
            return
        if self.watchdog:
            with contextlib.suppress(Exception):
                chan.write(STOP_LINE)
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
    stop_reason: str | None  # set when a Stop ended the command (not when it timed out)
    kill_note: str  # what stopping it did, for the result's error message
    lost: Exception | None  # set when the connection died under the command
    wedged: bool  # the channel never closed: the connection should not be reused


async def open_session(
    conn: asyncssh.SSHClientConnection,
    session: CommandSession,
    command: str,
    env: Mapping[str, str],
    timeout_s: float,
    grace_s: float,
) -> None:
    """Open a session channel and start `command` on it, within `timeout_s`."""
    env_arg: dict[bytes | str, bytes | str] = dict(env.items())
    async with asyncio.timeout(timeout_s):
        chan, _ = await conn.create_session(
            lambda: session,
            wrap(command, grace_s) if session.watchdog else command,
            env=env_arg if env_arg else (),
            send_env=None,  # never leak the collector's own environment
            request_pty=False,
            x11_forwarding=False,
            encoding=None,
        )
    if not session.watchdog:
        chan.write_eof()  # the watchdog keeps stdin: its end of file means "channel gone"


async def wait_command(
    session: CommandSession, timeout_s: float, grace_s: float, stop: Stop | None = None
) -> Finished:
    """Wait for the command to end; past `timeout_s`, or once `stop` is set, stop it."""
    timed_out = False
    note = ""
    if stop is not None:
        stop.attach(session.wake)
    try:
        try:
            async with asyncio.timeout(timeout_s):
                await session.wake.wait()
        except TimeoutError:
            timed_out = True
        if not session.closed.is_set():
            note = await stop_command(session, grace_s)
    finally:
        if stop is not None:
            stop.detach(session.wake)
    stopped = not timed_out and stop is not None and stop.is_set() and bool(note)
    return Finished(
        exit_status=session.exit_status,
        exit_signal=session.exit_signal,
        stdout=session.stdout.result(),
        stderr=session.stderr.result(),
        timed_out=timed_out,
        stop_reason=stop.reason if stopped and stop is not None else None,
        kill_note=note,
        lost=session.lost,
        wedged=not session.closed.is_set(),
    )


async def stop_command(session: CommandSession, grace_s: float) -> str:
    """Stop the running command: at most 3 × `grace_s`; what it took, for the result."""
    first = session.ask_stop()
    if await _closed_within(session, grace_s):
        return f"{first}: the command ended"
    chan = session.chan
    assert chan is not None
    with contextlib.suppress(Exception):
        chan.send_signal("KILL")
    if await _closed_within(session, grace_s):
        return f"{first}, then sent KILL: the command ended"
    chan.close()
    if await _closed_within(session, grace_s):
        return f"{first} and KILL, then closed the channel: the command ended"
    return f"{first} and KILL and closed the channel; the server never confirmed"


async def stop_cancelled(session: CommandSession, grace_s: float) -> None:
    """Stop the command of a cancelled task before the cancellation goes on (bounded)."""
    if session.chan is None or session.closed.is_set():
        return
    try:
        await stop_command(session, grace_s)
    except asyncio.CancelledError:  # cancelled again: do what needs no waiting
        session.abort()
        raise


async def _closed_within(session: CommandSession, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await session.closed.wait()
    except TimeoutError:
        return False
    return True
