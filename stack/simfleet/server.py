"""The fleet process: one listener per simulated host on loopback, all in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import asyncssh

from stack.simfleet.config import Behaviour, FleetConfig, SimHost, build_hosts
from stack.simfleet.files import (
    StateFiles,
    atomic_write,
    hosts_text,
    inventory_toml,
    write_json,
)
from stack.simfleet.keys import derive_host_key, known_hosts_line, load_or_create_client_key
from stack.simfleet.session import Runtime, SimSession

log = logging.getLogger("simfleet")

# Descriptors the process needs besides listeners and connections: stdio, the log, the
# event loop's own (epoll, signal pipe), files written while running.
FD_RESERVE = 100
# What a client may send before the server's banner (version line + KEXINIT) fits easily.
EARLY_DATA_MAX = 64 * 1024


class StartError(RuntimeError):
    """The fleet cannot start; the message says why and what to change."""


def fd_budget(listeners: int, expected_connections: int, hard_limit: int) -> int:
    """Connections the process can hold beside its listeners; raises if `expected` won't fit."""
    needed = listeners + expected_connections + FD_RESERVE
    if needed > hard_limit:
        room = hard_limit - listeners - FD_RESERVE
        advice = (
            f"pass --max-connections {room} or less, or " if room > 0 else "use fewer hosts, or "
        )
        raise StartError(
            f"{listeners} listeners + {expected_connections} connections + {FD_RESERVE} spare "
            f"need {needed} file descriptors but the hard limit (RLIMIT_NOFILE) is "
            f"{hard_limit}: {advice}raise the hard limit (ulimit -Hn, systemd LimitNOFILE)"
        )
    return hard_limit - listeners - FD_RESERVE


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class SimServer(asyncssh.SSHServer):
    """Authentication and sessions for one simulated host."""

    def __init__(self, host: SimHost, runtime: Runtime) -> None:
        self._host = host
        self._runtime = runtime
        self._username = ""

    def begin_auth(self, username: str) -> bool:
        self._username = username
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self._host.behaviour is Behaviour.AUTH_FAIL:
            accepted = False
        else:
            accepted = key.public_data == self._runtime.client_public_data
        if not accepted:
            self._runtime.stats.auth_rejected += 1
        return accepted

    def session_requested(self) -> SimSession:
        return SimSession(self._host, self._runtime, self._username)


class Gate(asyncio.Protocol):
    """Counts and caps connections in front of the SSH protocol; delays or withholds it."""

    def __init__(
        self,
        runtime: Runtime,
        gates: set[Gate],
        inner: Callable[[], asyncio.Protocol] | None,
        delay_s: float,
        cap: int,
    ) -> None:
        self._runtime, self._gates, self._inner_factory = runtime, gates, inner
        self._delay_s, self._cap = delay_s, cap
        self._transport: asyncio.Transport | None = None
        self._inner: asyncio.Protocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._early = bytearray()  # data that arrived before the SSH protocol started

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        stats = self._runtime.stats
        stats.connections_accepted += 1
        if stats.connections_active >= self._cap:
            # Refuse before accept() starts failing with EMFILE for everyone.
            stats.connections_refused += 1
            transport.abort()
            return
        stats.connections_active += 1
        self._transport = transport
        self._gates.add(self)
        if self._inner_factory is None:
            # Dead host: never answer. Incoming bytes are discarded (the client cannot tell),
            # so a client giving up is noticed and its socket freed.
            stats.dead_connections += 1
        elif self._delay_s > 0:
            stats.handshakes_delayed += 1
            transport.pause_reading()
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._start)
        else:
            self._start()

    def _start(self) -> None:
        assert self._transport is not None
        assert self._inner_factory is not None
        self._timer = None
        self._inner = self._inner_factory()
        self._inner.connection_made(self._transport)
        if self._early:
            # uvloop may deliver a read that was already under way despite pause_reading().
            early, self._early = bytes(self._early), bytearray()
            self._inner.data_received(early)
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)
        elif self._inner_factory is not None:
            self._early += data
            if len(self._early) > EARLY_DATA_MAX and self._transport is not None:
                self._transport.abort()  # not an SSH client

    def eof_received(self) -> bool | None:
        # None closes the transport: right for a dead host whose client gave up.
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return  # refused at the cap; never counted as active
        self._runtime.stats.connections_active -= 1
        self._gates.discard(self)
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def abort(self) -> None:
        """Drop the connection now (shutdown)."""
        if self._transport is not None:
            self._transport.abort()


class SimFleet:
    """The simulated fleet inside this process: start, serve, write stats, stop."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.files = StateFiles(config.dir)
        self.hosts: list[SimHost] = build_hosts(config)
        self.runtime: Runtime | None = None
        self.max_connections = 0
        self.started_s = 0.0
        self._servers: list[asyncio.AbstractServer] = []
        self._gates: set[Gate] = set()
        self._stats_seq = 0

    async def start(self) -> None:
        """Check limits, write keys, bind every listener, write the files, then `ready`."""
        t0 = time.perf_counter()
        config, files = self.config, self.files
        files.dir.mkdir(parents=True, exist_ok=True)
        self._claim_pid_file()
        for stale in (files.ready, files.stats):
            stale.unlink(missing_ok=True)
        limit = raise_fd_limit()
        self.max_connections = fd_budget(
            len(self.hosts), config.max_connections or len(self.hosts), limit
        )
        client_key = load_or_create_client_key(files.client_key)
        self.runtime = Runtime(config, client_key.public_data)
        known = await self._listen_all()
        files.known_hosts.write_text("\n".join(known) + "\n")
        atomic_write(files.hosts, hosts_text(self.hosts))
        atomic_write(files.inventory, inventory_toml(self.hosts, files, config.user))
        self.started_s = time.perf_counter() - t0
        write_json(
            files.ready,
            {
                "pid": os.getpid(),
                "hosts": len(self.hosts),
                "start_s": round(self.started_s, 3),
                "max_connections": self.max_connections,
            },
        )
        log.info(
            "event=ready hosts=%d start_s=%.2f fd_limit=%d max_connections=%d dir=%s",
            len(self.hosts),
            self.started_s,
            limit,
            self.max_connections,
            files.dir,
        )

    async def _listen_all(self) -> list[str]:
        """Bind one listener per host; returns the known_hosts lines (ports as bound)."""
        assert self.runtime is not None
        loop = asyncio.get_running_loop()
        config, runtime = self.config, self.runtime
        base = await asyncssh.SSHServerConnectionOptions.construct(
            server_host_keys=[derive_host_key(config.seed, "base")],
            encoding=None,
            server_version="simfleet",
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            keepalive_interval=0,
            login_timeout=60,
        )
        known: list[str] = []
        for i, host in enumerate(self.hosts):
            served = derive_host_key(config.seed, host.name)
            inner: Callable[[], asyncio.Protocol] | None = None
            if host.behaviour is not Behaviour.DEAD:
                options = await asyncssh.SSHServerConnectionOptions.construct(
                    base,
                    server_host_keys=[served],
                    server_factory=functools.partial(SimServer, host, runtime),
                )
                inner = functools.partial(asyncssh.SSHServerConnection, loop, options)
            delay = config.handshake_delay_s if host.behaviour is Behaviour.SLOW_HANDSHAKE else 0
            factory = functools.partial(
                Gate, runtime, self._gates, inner, delay, self.max_connections
            )
            try:
                server = await loop.create_server(
                    factory, host.address, host.port, backlog=config.backlog, reuse_address=True
                )
            except OSError as exc:
                await self.stop()
                in_use = exc.errno == errno.EADDRINUSE
                hint = " (in use: another simfleet on this address?)" if in_use else ""
                raise StartError(
                    f"cannot listen on {host.address}:{host.port}: {exc.strerror}{hint}"
                ) from exc
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.hosts[i] = host = host._replace(port=port)
            # wrong_key: known_hosts names a key this host never presents.
            listed = (
                derive_host_key(config.seed, host.name, "listed")
                if host.behaviour is Behaviour.WRONG_KEY
                else served
            )
            known.append(known_hosts_line(host.address, port, listed))
        return known

    def _claim_pid_file(self) -> None:
        pid_file = self.files.pid
        with contextlib.suppress(FileNotFoundError, ValueError):
            other = int(pid_file.read_text().strip())
            if other != os.getpid() and _is_simfleet(other):
                raise StartError(f"a simfleet (pid {other}) already uses {self.files.dir}")
        atomic_write(pid_file, f"{os.getpid()}\n")

    def write_stats(self) -> None:
        """Write stats.json (atomically) with a sequence number readers can wait on."""
        if self.runtime is None:
            return
        self._stats_seq += 1
        snapshot = self.runtime.stats.snapshot()
        write_json(self.files.stats, {"seq": self._stats_seq, "pid": os.getpid(), **snapshot})

    async def stop(self) -> None:
        """Close listeners, drop every connection, cancel sessions, write final stats."""
        self.files.ready.unlink(missing_ok=True)
        for server in self._servers:
            server.close()
        self._servers.clear()
        for gate in list(self._gates):
            gate.abort()
        if self.runtime is not None and self.runtime.tasks:
            tasks = list(self.runtime.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5)
        self.write_stats()
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(self.files.pid.read_text()) == os.getpid():
                self.files.pid.unlink()
        log.info("event=stopped")

    async def __aenter__(self) -> SimFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _is_simfleet(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"simfleet" in cmdline
