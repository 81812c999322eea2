"""Pooled SSH connections shared across requests: capped, reused, reaped when idle, replaced.

One pool per collector. Connections are keyed by everything that makes them distinct (address,
port, user, keys, known_hosts, jump chain). Rules:

- a connection carries at most `max_channels` commands at once; past that the caller waits for
  a channel to free up as long as connecting to that host took, and only then opens another
  connection to it: requests running in step pile onto the same hosts in bursts, and when a
  channel frees sooner than a handshake would finish, waiting starts the command no later and
  saves both ends the handshake (measured: every host of warm-500x50 got a second connection);
- at most one connect per key is in flight: concurrent callers for the same host wait for it
  and share its result (a dead host costs one connect timeout, not N);
- at most `max_connections` connections are open or opening; when full, the least recently
  used idle connection is closed, and if none is idle the caller waits until its deadline;
- connects ahead of a session slot (`ready`) are at most `early_room` in flight: the rest of the
  pool stays for hosts holding slots, so they never wait for room. Past it `ready` declines at
  once and the host connects inside its slot (measured: 16 shards of 1,000 hosts on one
  collector connecting ahead filled the pool, and hosts holding slots timed out waiting for
  room — `PoolTimeout` on 3 of 4 hosts);
- idle connections are closed after `idle_ttl_s`; a connection that a jump-host tunnel runs
  through stays open while the tunnelled connection does;
- a connection that dies (keepalive, RST, the server went away) leaves the pool at once, and
  `discard(..., replaced=True)` counts a dead one found by a caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import asyncssh

from collector.inventory import HostSpec
from collector.metrics import CollectorMetrics
from collector.outcome import ConnectTimeout, JumpError, PoolTimeout

log = logging.getLogger("fleetrun.collector.pool")

Key = tuple[Hashable, ...]
# (host, tunnel or None, timeout_s, client object for the connection) -> an open connection
Connector = Callable[
    [HostSpec, asyncssh.SSHClientConnection | None, float, asyncssh.SSHClient],
    Awaitable[asyncssh.SSHClientConnection],
]
_CLOSE_TIMEOUT_S = 5.0


class PoolClosed(RuntimeError):
    """The pool is closing: no new connections or channels."""


def pool_key(spec: HostSpec) -> Key:
    """What makes two hosts share connections: everything but the display name."""
    jump = pool_key(spec.jump) if spec.jump is not None else None
    return (
        spec.address,
        spec.port,
        spec.user,
        spec.client_keys,
        spec.known_hosts,
        spec.config_host,
        jump,
    )


class PooledConnection:
    """One open connection and its bookkeeping; `conn` is the asyncssh connection."""

    __slots__ = (
        "channels",
        "closed",
        "conn",
        "connect_s",
        "dependents",
        "jump",
        "key",
        "last_used",
        "uses",
    )

    def __init__(
        self,
        key: Key,
        conn: asyncssh.SSHClientConnection,
        jump: PooledConnection | None,
        connect_s: float = 0.0,
    ) -> None:
        self.key = key
        self.conn = conn
        self.jump = jump  # the jump host connection this one is tunnelled through
        self.channels = 0  # commands running on it now
        self.dependents = 0  # connections tunnelled through it now
        self.uses = 0
        self.last_used = time.monotonic()
        self.closed = False
        self.connect_s = connect_s  # how long it took to open: what another one would cost

    @property
    def idle(self) -> bool:
        return not self.channels and not self.dependents


class _Watch(asyncssh.SSHClient):
    """Tells the pool the moment its connection is lost."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.entry: PooledConnection | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.entry is not None:
            self.pool._forget(self.entry, reason="lost")


class ConnectionPool:
    """See the module docstring; `acquire` / `release` around every command."""

    def __init__(
        self,
        connector: Connector,
        *,
        max_connections: int,
        max_channels: int,
        idle_ttl_s: float,
        metrics: CollectorMetrics,
        clock: Callable[[], float] = time.monotonic,
        early_room: int | None = None,
    ) -> None:
        self._connector = connector
        self._max_connections = max(1, max_connections)
        # None: as many as the pool holds (nothing else competes for room).
        self._early_room = self._max_connections if early_room is None else max(0, early_room)
        self._early = 0  # connects started by `ready` and still in flight
        self._max_channels = max(1, max_channels)
        self._idle_ttl_s = idle_ttl_s
        self._metrics = metrics
        self._clock = clock
        self._entries: dict[Key, list[PooledConnection]] = {}
        self._pending: dict[Key, asyncio.Task[PooledConnection]] = {}
        self._open = 0
        self._changed = asyncio.Event()
        self._closing = False
        self._reaper: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self.new_total = 0
        self.reused_total = 0
        self.replaced_total = 0

    # -- public -------------------------------------------------------------------------------

    async def ready(self, spec: HostSpec, deadline: float) -> bool:
        """Wait until a connection to `spec` is open (opening one if none is), claiming nothing;
        False at once, connecting nothing, when `early_room` connects are already in flight.

        The executor connects first and takes a session slot only then: a slot is not held
        through a handshake, and a channel is not held while waiting for a slot. Raises what
        `acquire` raises.
        """
        found = await self._acquire(spec, deadline, channel=False, fresh=False, claim=False)
        return found is not None

    async def acquire(
        self, spec: HostSpec, deadline: float, *, fresh: bool = False
    ) -> tuple[PooledConnection, bool]:
        """A connection to `spec` with one channel reserved for the caller; True if just opened.

        `deadline` (clock time) bounds waiting for a slot and connecting; `fresh` skips the
        pooled connections (after one was found dead). Raises what connecting raised,
        ConnectTimeout, PoolTimeout or PoolClosed.
        """
        found = await self._acquire(spec, deadline, channel=True, fresh=fresh)
        assert found is not None  # only ready() declines
        return found

    def release(self, entry: PooledConnection) -> None:
        """Give back the channel reserved by `acquire`."""
        entry.channels -= 1
        entry.last_used = self._clock()
        self._notify()

    def discard(self, entry: PooledConnection, *, replaced: bool = False) -> None:
        """Drop `entry` (found dead, or wedged) from the pool and close it; frees its channel."""
        entry.channels = max(0, entry.channels - 1)
        if replaced:
            self._count_replaced()
        self._forget(entry, reason="replaced" if replaced else "discarded")

    def stats(self) -> dict[str, int]:
        """open, idle, channels, connecting, new_total, reused_total, replaced_total."""
        entries = [e for es in self._entries.values() for e in es]
        return {
            "open": self._open,
            "idle": sum(1 for e in entries if e.idle),
            "channels": sum(e.channels for e in entries),
            "connecting": len(self._pending),
            "new_total": self.new_total,
            "reused_total": self.reused_total,
            "replaced_total": self.replaced_total,
        }

    async def close(self, timeout_s: float = 10.0) -> None:
        """Close every connection, waiting at most `timeout_s` for them to finish closing."""
        self._closing = True
        self._notify()
        tasks: list[asyncio.Task[Any]] = list(self._pending.values())
        if self._reaper is not None:
            tasks.append(self._reaper)
        for task in tasks:
            task.cancel()
        entries = [e for es in self._entries.values() for e in es]
        for entry in entries:
            self._forget(entry, reason="shutdown")
        waiting = [*tasks, *self._closers]
        if waiting:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(*waiting, return_exceptions=True)
            except TimeoutError:
                for entry in entries:
                    entry.conn.abort()
                log.warning("ssh connections still closing after the deadline; aborted")

    # -- acquiring ----------------------------------------------------------------------------

    async def _acquire(
        self, spec: HostSpec, deadline: float, *, channel: bool, fresh: bool, claim: bool = True
    ) -> tuple[PooledConnection, bool] | None:
        key = pool_key(spec)
        patience: float | None = None  # until when a busy connection is waited for
        while True:
            if self._closing:
                raise PoolClosed("the collector is shutting down")
            if not fresh:
                entry = self._pick(key, channel)
                if entry is not None:
                    return entry, self._claim(entry, channel) if claim else False
                busy = self._entries.get(key) if channel and claim else None
                if busy:  # connected, every channel taken
                    if patience is None:
                        connect_s = max(e.connect_s for e in busy)
                        patience = min(deadline, self._clock() + connect_s)
                    if self._clock() < patience:
                        await self._wait_until(patience)
                        continue
            task = self._pending.get(key)
            early = not claim
            if task is None and early and self._early >= self._early_room:
                return None  # ready() declines: the pool's room is for hosts holding slots
            if task is None and self._make_room():
                task = self._start(spec, key, deadline, early=early)
            if task is None and early:
                return None  # full of busy connections: connect inside the slot, never wait here
            if task is None:
                await self._wait(deadline)
                continue
            remaining = deadline - self._clock()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    entry = await asyncio.shield(task)
            except TimeoutError:
                raise ConnectTimeout(f"no SSH connection to {spec.address}:{spec.port}") from None
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if task.cancelled() and current is not None and not current.cancelling():
                    raise PoolClosed("the collector is shutting down") from None
                raise
            fresh = False
            if not entry.closed and (not channel or entry.channels < self._max_channels):
                return entry, self._claim(entry, channel) if claim else False

    def _pick(self, key: Key, channel: bool) -> PooledConnection | None:
        for entry in list(self._entries.get(key, ())):
            if entry.conn.is_closed():
                self._forget(entry, reason="lost")
                continue
            if not channel or entry.channels < self._max_channels:
                return entry
        return None

    def _claim(self, entry: PooledConnection, channel: bool) -> bool:
        if channel:
            entry.channels += 1
        else:
            entry.dependents += 1
        new = entry.uses == 0
        entry.uses += 1
        entry.last_used = self._clock()
        if channel and not new:
            self.reused_total += 1
        return new

    def _make_room(self) -> bool:
        if self._open + len(self._pending) < self._max_connections:
            return True
        idle = [e for es in self._entries.values() for e in es if e.idle]
        if not idle:
            return False
        self._forget(min(idle, key=lambda e: e.last_used), reason="evicted (pool full)")
        return True

    async def _wait(self, deadline: float) -> None:
        remaining = deadline - self._clock()
        changed = self._changed
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                await changed.wait()
        except TimeoutError:
            raise PoolTimeout(
                f"all {self._max_connections} pooled SSH connections stayed busy"
            ) from None

    async def _wait_until(self, until: float) -> None:
        """Until the pool changes or `until` passes, whichever comes first."""
        try:
            async with asyncio.timeout(max(0.0, until - self._clock())):
                await self._changed.wait()
        except TimeoutError:
            pass

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- connecting ---------------------------------------------------------------------------

    def _start(
        self, spec: HostSpec, key: Key, deadline: float, *, early: bool = False
    ) -> asyncio.Task[PooledConnection]:
        task = asyncio.create_task(self._connect(spec, key, deadline), name=f"ssh-connect {spec}")
        self._pending[key] = task
        self._early += early

        def done(t: asyncio.Task[PooledConnection]) -> None:
            self._early -= early
            if self._pending.get(key) is t:
                del self._pending[key]
            if not t.cancelled():
                t.exception()  # retrieved here: every waiter may have given up already
            self._notify()

        task.add_done_callback(done)
        return task

    async def _connect(self, spec: HostSpec, key: Key, deadline: float) -> PooledConnection:
        jump: PooledConnection | None = None
        if spec.jump is not None:
            jump = await self._jump(spec.jump, deadline)
        try:
            conn = await self._open_conn(spec, jump, deadline)
        except asyncssh.ChannelOpenError:
            if jump is None or spec.jump is None or not jump.conn.is_closed():
                raise
            # The pooled jump connection was dead (its tunnel could not open): replace it once,
            # like a dead target connection. _open_conn already gave back our use of it.
            self._count_replaced()
            self._forget(jump, reason="replaced")
            jump = await self._jump(spec.jump, deadline, fresh=True)
            conn = await self._open_conn(spec, jump, deadline)
        return conn

    async def _jump(
        self, spec: HostSpec, deadline: float, *, fresh: bool = False
    ) -> PooledConnection:
        try:
            found = await self._acquire(spec, deadline, channel=False, fresh=fresh)
            assert found is not None  # claimed: never declined
            entry = found[0]
        except PoolClosed:
            raise
        except Exception as exc:
            raise JumpError(spec.name, exc) from exc
        return entry

    async def _open_conn(
        self, spec: HostSpec, jump: PooledConnection | None, deadline: float
    ) -> PooledConnection:
        watch = _Watch(self)
        started = self._clock()
        try:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ConnectTimeout(f"no SSH connection to {spec.address}:{spec.port}")
            conn = await self._connector(spec, jump.conn if jump else None, remaining, watch)
        except BaseException:
            if jump is not None:
                self.release_dependent(jump)
            raise
        entry = PooledConnection(pool_key(spec), conn, jump, self._clock() - started)
        if conn.is_closed():
            self._open += 1  # _forget counts it out again
            self._forget(entry, reason="lost while connecting")
            raise asyncssh.ConnectionLost("connection closed right after login")
        watch.entry = entry
        self._entries.setdefault(entry.key, []).append(entry)
        self._open += 1
        self.new_total += 1
        self._metrics.open_connections.set(self._open)
        self._ensure_reaper()
        return entry

    def release_dependent(self, entry: PooledConnection) -> None:
        """A tunnelled connection through `entry` closed."""
        entry.dependents -= 1
        entry.last_used = self._clock()
        self._notify()

    def _count_replaced(self) -> None:
        self.replaced_total += 1
        self._metrics.connection_replaced.inc()

    # -- closing ------------------------------------------------------------------------------

    def _forget(self, entry: PooledConnection, *, reason: str) -> None:
        """Take `entry` out of the pool (idempotent) and close its connection in the background."""
        if entry.closed:
            return
        entry.closed = True
        entries = self._entries.get(entry.key)
        if entries is not None and entry in entries:
            entries.remove(entry)
            if not entries:
                del self._entries[entry.key]
        self._open -= 1
        self._metrics.open_connections.set(self._open)
        if entry.jump is not None:
            self.release_dependent(entry.jump)
        log.debug("ssh connection closed", extra={"reason": reason, "key": str(entry.key[:3])})
        if not entry.conn.is_closed():
            entry.conn.close()
            closer = asyncio.create_task(self._wait_closed(entry))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        self._notify()

    async def _wait_closed(self, entry: PooledConnection) -> None:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await entry.conn.wait_closed()
        except TimeoutError:
            entry.conn.abort()

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="ssh-pool-reaper")

    async def _reap(self) -> None:
        interval = max(0.05, min(self._idle_ttl_s / 2, 30.0))
        while self._entries:
            await asyncio.sleep(interval)
            now = self._clock()
            for entry in [e for es in self._entries.values() for e in es]:
                if entry.idle and now - entry.last_used >= self._idle_ttl_s:
                    self._forget(entry, reason="idle")
