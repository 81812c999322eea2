"""One SSH session on a simulated host: plan the command, run the plan, report how it ended.

Uses asyncssh's callback-level session API rather than SSHServerProcess because a signal
must end a hung command even after the client closed stdin (stream reads stop at EOF).

The collector wraps each command in its watchdog script (collector.watchdog); a simulated host
runs the command inside, and a line on stdin stops it with TERM, as the real watchdog does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from collector.watchdog import unwrap
from stack.simfleet.config import FleetConfig, SimHost
from stack.simfleet.shell import (
    Disconnect,
    Exit,
    Fill,
    Hang,
    HostContext,
    Lines,
    Mark,
    Plan,
    Signal,
    Sleep,
    Stream,
    Write,
    plan_command,
)

log = logging.getLogger("simfleet")

CHUNK_BYTES = 64 * 1024
_LINE = b"simfleet huge output: the quick brown fox jumps over the lazy dog 0123456789\n"
TEXT_CHUNK = (_LINE * (CHUNK_BYTES // len(_LINE) + 1))[:CHUNK_BYTES]
ZERO_CHUNK = bytes(CHUNK_BYTES)
CLOSED = "closed"  # interrupt reason when the channel or connection went away


@dataclass
class Stats:
    """Counters written to stats.json; per-host entries only for hosts that saw commands."""

    connections_accepted: int = 0
    connections_active: int = 0
    connections_refused: int = 0  # over the fd budget: accepted and closed at once
    handshakes_delayed: int = 0
    dead_connections: int = 0
    auth_rejected: int = 0
    sessions: int = 0
    commands: int = 0
    running: int = 0  # commands started and not yet ended: what is left when a client went away
    completed: int = 0
    killed: int = 0
    killed_by_signal: int = 0
    killed_by_close: int = 0
    disconnects: int = 0
    errors: int = 0
    bytes_out: int = 0
    per_host: dict[str, dict[str, int]] = field(default_factory=dict)
    marks: dict[str, dict[str, int]] = field(default_factory=dict)  # tag → host → executions

    def host(self, name: str) -> dict[str, int]:
        """The per-host counters of `name`, created on first use."""
        return self.per_host.setdefault(name, {"commands": 0, "killed": 0})

    def mark(self, tag: str, name: str) -> None:
        """Count one execution of `sim:mark tag` on host `name`."""
        hosts = self.marks.setdefault(tag, {})
        hosts[name] = hosts.get(name, 0) + 1

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready copy."""
        nested = ("per_host", "marks")
        counters = {k: v for k, v in dataclasses.asdict(self).items() if k not in nested}
        return {
            "counters": counters,
            "hosts": {k: dict(v) for k, v in self.per_host.items()},
            "marks": {k: dict(v) for k, v in self.marks.items()},
        }


@dataclass
class Runtime:
    """State shared by every connection and session of one fleet."""

    config: FleetConfig
    client_public_data: bytes
    stats: Stats = field(default_factory=Stats)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class SimSession(asyncssh.SSHServerSession[bytes]):
    """Runs one exec request of one simulated host."""

    def __init__(self, host: SimHost, runtime: Runtime, username: str) -> None:
        self._host = host
        self._runtime = runtime
        self._username = username
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._command: str | None = None
        self._interrupt: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._finishing = False
        self._watchdog = False  # the command came wrapped in collector.watchdog's script

    # asyncssh callbacks

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        self._runtime.stats.sessions += 1

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        inner = unwrap(command)
        self._watchdog = inner is not None
        self._command = command if inner is None else inner
        return True

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._watchdog:  # the watchdog's stop line: TERM to the process group
            self._interrupted("TERM")

    def session_started(self) -> None:
        task = asyncio.create_task(self._run(), name=f"simfleet-{self._host.name}")
        self._runtime.tasks.add(task)
        task.add_done_callback(self._runtime.tasks.discard)

    def eof_received(self) -> bool:
        return True  # stdin closed is not the end of the command: stay half-open

    def signal_received(self, signal: str) -> None:
        self._interrupted(signal)

    def break_received(self, msec: int) -> bool:
        self._interrupted("INT")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()  # wake a writer blocked on flow control; it will find the close
        self._interrupted(CLOSED)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # the simulated process

    def _interrupted(self, reason: str) -> None:
        if not self._finishing and not self._interrupt.done():
            self._interrupt.set_result(reason)

    async def _run(self) -> None:
        stats, name = self._runtime.stats, self._host.name
        stats.commands += 1
        stats.host(name)["commands"] += 1
        plan = plan_command(self._command, self._context())
        body = asyncio.create_task(self._execute(plan))
        waiters: set[asyncio.Future[Any]] = {body, self._interrupt}
        stats.running += 1
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not body.done():
                body.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await body
            stats.running -= 1
        if body.cancelled() or isinstance(body.exception(), OSError | asyncssh.Error):
            reason = self._interrupt.result() if self._interrupt.done() else CLOSED
            self._killed(reason)
        elif (exc := body.exception()) is not None:
            stats.errors += 1
            log.error("event=session_error host=%s error=%r", name, exc)
            self._close()
        else:
            self._finish(body.result())

    def _context(self) -> HostContext:
        config = self._runtime.config
        assert self._chan is not None
        return HostContext(
            name=self._host.name,
            address=self._host.address,
            behaviour=self._host.behaviour,
            seed=config.seed,
            user=self._username,
            env=self._chan.get_environment(),
            slow_s=config.slow_s,
            huge_bytes=config.huge_bytes,
        )

    async def _execute(self, plan: Plan) -> Exit | Signal | Disconnect:
        for step in plan:
            match step:
                case Write(stream=stream, data=data):
                    await self._write(stream, data)
                case Fill(stream=stream, count=count, zeros=zeros):
                    chunk = ZERO_CHUNK if zeros else TEXT_CHUNK
                    full, tail = divmod(count, len(chunk))
                    for _ in range(full):
                        await self._write(stream, chunk)
                    await self._write(stream, chunk[:tail])
                case Sleep(seconds=seconds):
                    await asyncio.sleep(seconds)
                case Hang():
                    await asyncio.get_running_loop().create_future()  # ended by an interrupt
                case Mark(tag=tag):
                    self._runtime.stats.mark(tag, self._host.name)
                case Lines(rate=rate, seconds=seconds):
                    await self._lines(rate, seconds)
                case Exit() | Signal() | Disconnect():
                    return step
        return Exit(0)

    async def _lines(self, rate: int, seconds: float) -> None:
        # Every 10 ms, the lines due by then: steady output without a write per line.
        loop = asyncio.get_running_loop()
        start = loop.time()
        written = 0
        total = round(rate * seconds)
        name = self._host.name.encode()
        while written < total:
            due = min(total, int((loop.time() - start) * rate) + 1)
            now_ns = time.time_ns()
            block = b"".join(b"%s %d %d\n" % (name, n, now_ns) for n in range(written, due))
            written = due
            await self._write(Stream.STDOUT, block)
            await asyncio.sleep(max(0.0, start + written / rate - loop.time()))

    async def _write(self, stream: Stream, data: bytes) -> None:
        assert self._chan is not None
        if not data:
            return
        datatype = asyncssh.EXTENDED_DATA_STDERR if stream is Stream.STDERR else None
        self._chan.write(data, datatype)
        self._runtime.stats.bytes_out += len(data)
        # Flow control: the channel says when its buffer is over the high-water mark.
        await self._writable.wait()

    def _finish(self, final: Exit | Signal | Disconnect) -> None:
        stats = self._runtime.stats
        self._finishing = True
        assert self._chan is not None
        if self._chan.is_closing():
            self._killed(CLOSED)
            return
        stats.completed += 1
        match final:
            case Exit(status=status):
                self._chan.exit(status)
            case Signal(name=signal):
                self._chan.exit_with_signal(signal)
            case Disconnect():
                stats.disconnects += 1
                log.debug("event=disconnect host=%s", self._host.name)
                # abort(): no SSH_MSG_DISCONNECT, the TCP connection just goes away.
                self._chan.get_connection().abort()

    def _killed(self, reason: str) -> None:
        stats = self._runtime.stats
        self._finishing = True
        stats.killed += 1
        stats.host(self._host.name)["killed"] += 1
        if reason == CLOSED:
            stats.killed_by_close += 1
        else:
            stats.killed_by_signal += 1
            # A process killed by a signal reports it, like sshd does.
            if self._chan is not None and not self._chan.is_closing():
                self._chan.exit_with_signal(reason)
        log.debug("event=killed host=%s reason=%s", self._host.name, reason)

    def _close(self) -> None:
        if self._chan is not None and not self._chan.is_closing():
            self._chan.close()
