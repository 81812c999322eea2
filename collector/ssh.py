"""The SSH executor: from "this host, this request" to that host's Result, over pooled asyncssh.

`SshExecutor.run` never raises for a per-host problem: every outcome is a Result whose status
follows collector.outcome's table. It retries only the connection phase of unreachable hosts
(request.retries, backoff from settings), never a command that may have started. A pooled
connection found dead when opening the session is replaced once, transparently (a metric, not a
failure). The global session cap (settings.max_sessions) is a fair-share semaphore
(collector.fairshare) around each command, taken once the host is connected and before its
channel is.

Stopping a command leaves nothing behind on the host (collector.command, collector.watchdog):
a timeout gives status `timeout`; a `Stop` passed to `run` and set by the caller gives a final
Result, status `error` with error.type `killed` ("killed: <reason>; ...", exit_signal when
known), or `skipped` with error.type `not_started` when the command was not launched yet:

    stop = Stop()
    task = asyncio.create_task(executor.run(host, request, collector=name, stop=stop))
    stop.set("request cancelled by alice")
    result = await task          # publish it: the host's final result

Cancelling the task instead stops the remote command (at most 3 × settings.ssh_kill_grace_s)
before the CancelledError goes on; there is no Result then. Closing the executor drops its
connections, and the watchdog on each host kills what still ran there.

Every network wait has a deadline: connect + login (request.connect_timeout_s, with
settings.ssh_login_timeout_s inside it), waiting for a pooled slot (the same deadline), session
open (connect_timeout_s again), the command (timeout_s, then ssh_kill_grace_s per kill step),
and closing (close()'s timeout).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime

import asyncssh

from collector import hostkeys
from collector.command import CommandSession, open_session, stop_cancelled, wait_command
from collector.fairshare import FairSessions
from collector.fanout import OnStart
from collector.inventory import HostSpec, Inventory
from collector.live import HostStream, LiveOutputs
from collector.metrics import CollectorMetrics
from collector.outcome import (
    Outcome,
    build_result,
    classify_connect_error,
    command_outcome,
    connect_error,
    error_info,
    not_started,
)
from collector.pool import ConnectionPool, PoolClosed, PooledConnection
from collector.settings import CollectorSettings
from collector.sshfiles import KeyCache, KnownHostsCache
from collector.stop import Stop
from fleetrun.runtime.backoff import backoff_delay
from schemas import Request, Result

log = logging.getLogger("fleetrun.collector.ssh")


class SshExecutor:
    """Runs commands on hosts over a shared connection pool; see the module docstring."""

    def __init__(
        self, settings: CollectorSettings, metrics: CollectorMetrics, inventory: Inventory
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._inventory = inventory
        self._keys = KeyCache()
        self._known_hosts = KnownHostsCache(settings.ssh_known_hosts)
        # The session cap, shared fairly between principals and requests (collector.fairshare).
        self._sessions = FairSessions(settings.max_sessions, settings.fair_share_weight_map)
        # The one options object; each connection derives its own (host, user, keys, ...).
        # config=[] everywhere: only settings.ssh_config applies, never ~/.ssh/config by surprise.
        self._options = asyncssh.SSHClientConnectionOptions(
            config=[],
            login_timeout=settings.ssh_login_timeout_s,
            keepalive_interval=settings.ssh_keepalive_interval_s,
            keepalive_count_max=settings.ssh_keepalive_count_max,
            agent_path=settings.ssh_agent_path,  # None: no agent (not even $SSH_AUTH_SOCK)
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_auth=False,
            gss_kex=False,
            x509_trusted_certs=None,
            x509_trusted_cert_paths=[],
            agent_forwarding=False,
            x11_forwarding=False,
            request_pty=False,
            send_env=None,
            encoding=None,
            encryption_algs=list(settings.ssh_ciphers) or (),
        )
        self.live: LiveOutputs | None = None  # set by the service: where streamed output goes
        self._pool = ConnectionPool(
            self._connect,
            max_connections=settings.max_connections,
            max_channels=settings.max_sessions_per_connection,
            idle_ttl_s=settings.pool_idle_ttl_s,
            metrics=metrics,
            # Room kept for hosts holding one of the max_sessions slots; the rest may connect
            # ahead of their slot.
            early_room=settings.max_connections - settings.max_sessions,
        )
        if not settings.ssh_verify_host_keys:
            log.warning(
                "SSH HOST KEY VERIFICATION IS OFF (ssh_verify_host_keys=false): any machine "
                "answering at a host's address gets the commands; use this in labs only"
            )

    # -- public -------------------------------------------------------------------------------

    async def run(
        self,
        host: HostSpec,
        request: Request,
        *,
        collector: str,
        on_start: OnStart[HostSpec] | None = None,
        stop: Stop | None = None,
    ) -> Result:
        """Run `request` on `host` and return its final Result (never raises per host).

        `on_start(host, attempt)` is awaited right before the command is launched, once the
        connection is ready and a session slot is held; if it raises, nothing is launched and
        the exception propagates (it is the caller's failure, not the host's). `stop`, once
        set, stops the command (see the module docstring); it is checked before each attempt,
        before `on_start`, during retry backoff and while the command runs.
        """
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        attempt = 1
        while True:
            try:
                if stop is not None and stop.reason is not None:
                    outcome = not_started(stop.reason)
                else:
                    outcome = await self._attempt(host, request, attempt, on_start, stop)
            except asyncio.CancelledError:
                raise
            except _HookFailed as exc:
                raise exc.cause from None
            except Exception as exc:  # a bug here must still give this host its result
                log.exception(
                    "ssh executor failed unexpectedly",
                    extra={"request_id": request.request_id, "host": host.name},
                )
                outcome = Outcome("error", error_info(exc))
            if outcome.retry and attempt <= request.retries:
                delay = backoff_delay(
                    attempt,
                    self._settings.retry_backoff_s,
                    self._settings.retry_backoff_max_s,
                    random.random(),
                )
                log.info(
                    "host unreachable, will retry",
                    extra={
                        "request_id": request.request_id,
                        "host": host.name,
                        "attempt": attempt,
                        "delay_s": round(delay, 3),
                        "error": outcome.error.message if outcome.error else "",
                    },
                )
                if stop is None:
                    await asyncio.sleep(delay)
                else:
                    await stop.sleep(delay)  # a stop set meanwhile ends the loop above
                attempt += 1
                continue
            # Logged once, by whoever publishes it (collector.handler), not here as well.
            return build_result(host, request, collector, attempt, outcome, started_at, t0)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Close every pooled connection, waiting at most `timeout_s`."""
        await self._pool.close(timeout_s)

    def pool_stats(self) -> dict[str, int]:
        """open, idle, channels, connecting, new_total, reused_total, replaced_total."""
        return self._pool.stats()

    # -- one attempt --------------------------------------------------------------------------

    async def _attempt(
        self,
        host: HostSpec,
        request: Request,
        attempt: int,
        on_start: OnStart[HostSpec] | None,
        stop: Stop | None,
    ) -> Outcome:
        # Connected first, outside the session cap (a dead host's connect timeout holds no
        # slot); then the slot; then a channel. A channel held while waiting for a slot made
        # requests running in step on the same hosts hold more channels than a connection
        # carries, and every host of warm-500x50 got a second connection (500 handshakes).
        try:
            # False: the early connects in flight use up their room; connect in the slot.
            await self._pool.ready(host, time.monotonic() + request.connect_timeout_s)
        except Exception as exc:
            return _connect_failed(host, exc)
        async with self._sessions.slot(request.principal, request.request_id):
            try:
                # A fresh deadline: the time spent waiting for the slot was not connecting.
                deadline = time.monotonic() + request.connect_timeout_s
                entry, new = await self._pool.acquire(host, deadline)
            except Exception as exc:
                return _connect_failed(host, exc)
            self._metrics.connections.labels(kind="new" if new else "reused").inc()
            holder = _Holder(self._pool, entry)
            self._metrics.inflight_sessions.inc()
            try:
                if stop is not None and stop.reason is not None:
                    return not_started(stop.reason)
                if on_start is not None:
                    try:
                        await on_start(host, attempt)
                    except Exception as exc:
                        raise _HookFailed(exc) from exc
                live = self._live(request, host, attempt)
                try:
                    return await self._command(holder, host, request, new, stop, live)
                finally:
                    if live is not None:  # ended by the session already, unless it never ran
                        live.end()
            finally:
                self._metrics.inflight_sessions.dec()
                holder.release()

    async def _command(
        self,
        holder: _Holder,
        host: HostSpec,
        request: Request,
        new: bool,
        stop: Stop | None,
        live: HostStream | None,
    ) -> Outcome:
        grace_s = self._settings.ssh_kill_grace_s
        session, exc = await _open(holder.entry, request, grace_s, live)
        if exc is not None:
            if new or session.opened or not _looks_dead(holder.entry, exc):
                return self._open_failed(holder, session, exc)
            # A pooled connection that died while idle: replace it once, transparently.
            log.info(
                "pooled ssh connection was dead; replacing it",
                extra={"host": host.name, "request_id": request.request_id, "error": str(exc)},
            )
            holder.discard(replaced=True)
            try:
                deadline = time.monotonic() + request.connect_timeout_s
                entry, _ = await self._pool.acquire(host, deadline, fresh=True)
            except PoolClosed as closed:
                return Outcome("error", error_info(closed))
            except Exception as failed:
                return Outcome(classify_connect_error(failed), connect_error(host, failed))
            self._metrics.connections.labels(kind="new").inc()
            holder.switch(entry)
            session, exc = await _open(entry, request, grace_s, live)
            if exc is not None:
                return self._open_failed(holder, session, exc)
        t0 = time.monotonic()
        try:
            finished = await wait_command(session, request.timeout_s, grace_s, stop)
        except asyncio.CancelledError:
            await stop_cancelled(session, grace_s)
            if not session.closed.is_set():
                holder.discard()  # the channel may still be open: never hand it out again
            raise
        self._metrics.command_seconds.observe(time.monotonic() - t0)
        if finished.wedged or finished.lost is not None:
            holder.discard()  # never hand out a connection that lost or could not close a channel
        return command_outcome(finished, request.timeout_s)

    def _live(self, request: Request, host: HostSpec, attempt: int) -> HostStream | None:
        if request.stream_output and self.live is not None:
            return self.live.host(request.request_id, host.name, attempt)
        return None

    def _open_failed(self, holder: _Holder, session: CommandSession, exc: Exception) -> Outcome:
        if session.opened:  # the exec request got no answer: the command may be running
            session.abort()
            holder.discard()
        message = "opening the session failed"
        if isinstance(exc, TimeoutError):
            message = "no answer to the session request in time"
        return Outcome("error", error_info(exc, context=message))

    # -- connecting ---------------------------------------------------------------------------

    async def _connect(
        self,
        host: HostSpec,
        tunnel: asyncssh.SSHClientConnection | None,
        timeout_s: float,
        client: asyncssh.SSHClient,
    ) -> asyncssh.SSHClientConnection:
        """Open one authenticated connection to `host` (the pool's connector)."""
        keys = self._keys.get(host.client_keys or self._settings.ssh_client_keys)
        known_hosts: asyncssh.SSHKnownHosts | None = None
        if self._settings.ssh_verify_host_keys:
            known_hosts = self._known_hosts.get(host.known_hosts)
        else:
            log.warning(
                "connecting WITHOUT host key verification (ssh_verify_host_keys=false)",
                extra={"host": host.name, "address": host.address, "port": host.port},
            )
        config = self._settings.ssh_config
        # Only for hosts the inventory gives a password (collector.passwords); a password it
        # names but cannot read is this host's `error` (PasswordError), never a retry.
        password = self._inventory.passwords.get(host.name)
        t0 = time.monotonic()
        try:
            # asyncssh applies connect_timeout to TCP + handshake + login; the outer timeout also
            # covers building the options (a thread) and is the backstop if anything ignores it.
            async with asyncio.timeout(timeout_s + 1.0):
                conn = await asyncssh.connect(
                    host.config_host or host.address,
                    host.port,
                    options=self._options,
                    config=[config] if (config is not None and host.config_host) else [],
                    tunnel=tunnel,
                    username=host.user,
                    client_keys=keys,
                    known_hosts=known_hosts,
                    password=None if password is None else password.get_secret_value(),
                    password_auth=password is not None,
                    kbdint_auth=password is not None,  # appliances often ask this way
                    connect_timeout=timeout_s,
                    client_factory=lambda: client,
                )
        except Exception as exc:
            if known_hosts is None:
                raise
            # A host-key refusal, said precisely (and never taken for a network fault).
            left_s = timeout_s - (time.monotonic() - t0)
            source = host.known_hosts or self._settings.ssh_known_hosts
            refusal = await hostkeys.explain(exc, host, known_hosts, source, tunnel, left_s)
            if refusal is None:
                raise
            raise refusal from exc
        self._metrics.connect_seconds.observe(time.monotonic() - t0)
        return conn


def _connect_failed(host: HostSpec, exc: Exception) -> Outcome:
    """The outcome of a connect that failed: unreachable ones may be retried."""
    if isinstance(exc, PoolClosed):
        return Outcome("error", error_info(exc))
    status = classify_connect_error(exc)
    return Outcome(status, connect_error(host, exc), retry=status == "unreachable")


class _HookFailed(Exception):
    """on_start raised: not the host's failure, so run() re-raises the original."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Holder:
    """The channel a command holds on a pooled connection; released or discarded exactly once."""

    def __init__(self, pool: ConnectionPool, entry: PooledConnection) -> None:
        self.pool = pool
        self.entry = entry
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.pool.release(self.entry)

    def discard(self, *, replaced: bool = False) -> None:
        if self.held:
            self.held = False
            self.pool.discard(self.entry, replaced=replaced)

    def switch(self, entry: PooledConnection) -> None:
        """Hold a channel on `entry` instead (a replacement connection)."""
        self.release()
        self.entry = entry
        self.held = True


async def _open(
    entry: PooledConnection, request: Request, grace_s: float, live: HostStream | None
) -> tuple[CommandSession, Exception | None]:
    """Start the command on `entry`; the session, and the exception if it could not start."""
    session = CommandSession(request.max_output_bytes, live=live)
    try:
        # Opening a session gets as long as a connection may take.
        await open_session(
            entry.conn,
            session,
            request.command_line,
            request.env,
            request.connect_timeout_s,
            grace_s,
        )
    except asyncio.CancelledError:
        session.abort()
        raise
    except Exception as exc:
        return session, exc
    return session, None


def _looks_dead(entry: PooledConnection, exc: Exception) -> bool:
    """Whether a session-open failure means the pooled connection itself is gone."""
    if entry.conn.is_closed():
        return True
    if isinstance(exc, asyncssh.ChannelOpenError):
        return exc.code == asyncssh.OPEN_CONNECT_FAILED  # "SSH connection closed"
    return isinstance(exc, asyncssh.ConnectionLost | ConnectionError | TimeoutError)


__all__ = ["HostSpec", "SshExecutor", "Stop"]
