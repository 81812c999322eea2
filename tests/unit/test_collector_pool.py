"""The connection pool's rules, with a fake connector (no SSH): the real thing is integration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

import asyncssh
import pytest

from collector.inventory import HostSpec
from collector.metrics import CollectorMetrics
from collector.outcome import ConnectTimeout, PoolTimeout
from collector.pool import ConnectionPool, PoolClosed, pool_key

A = HostSpec("a", "10.0.0.1", 22, "u")
B = HostSpec("b", "10.0.0.2", 22, "u")
C = HostSpec("c", "10.0.0.3", 22, "u")
JUMP = HostSpec("j", "10.0.0.9", 22, "u")
BEHIND = HostSpec("behind", "10.1.0.1", 22, "u", jump=JUMP)


class FakeConn:
    def __init__(self, spec: HostSpec, tunnel: Any, client: asyncssh.SSHClient) -> None:
        self.spec = spec
        self.tunnel = tunnel
        self.client = client
        self._closed = False

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self.die()

    def abort(self) -> None:
        self.die()

    def die(self) -> None:
        if not self._closed:
            self._closed = True
            self.client.connection_lost(None)

    async def wait_closed(self) -> None:
        return None


class Connector:
    def __init__(self, delay_s: float = 0.01, fail: BaseException | None = None) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[HostSpec] = []
        self.conns: list[FakeConn] = []
        self.active = 0
        self.max_active: dict[str, int] = {}

    async def __call__(
        self, spec: HostSpec, tunnel: Any, timeout_s: float, client: asyncssh.SSHClient
    ) -> Any:
        self.calls.append(spec)
        self.active += 1
        self.max_active[spec.name] = max(self.max_active.get(spec.name, 0), self.active)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.active -= 1
        if self.fail is not None:
            raise self.fail
        conn = FakeConn(spec, tunnel, client)
        self.conns.append(conn)
        return conn


def make_pool(connector: Connector, **kw: Any) -> ConnectionPool:
    options: dict[str, Any] = {"max_connections": 100, "max_channels": 8, "idle_ttl_s": 60.0}
    options.update(kw)
    return ConnectionPool(connector, metrics=CollectorMetrics(), **options)


def soon(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


async def until(cond: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Poll `cond` until it holds, failing after `timeout_s` (the reaper has no event to await)."""
    async with asyncio.timeout(timeout_s):
        while not cond():  # noqa: ASYNC110 - a condition on a timer-driven reaper, with a deadline
            await asyncio.sleep(0.01)


async def test_one_connect_in_flight_per_host_and_channel_cap() -> None:
    connector = Connector()
    pool = make_pool(connector, max_channels=8)
    got = await asyncio.gather(*(pool.acquire(A, soon()) for _ in range(20)))
    assert len(connector.calls) == 3  # ceil(20 / 8), opened one after another
    assert connector.max_active["a"] == 1
    per_conn: dict[int, int] = {}
    for entry, _ in got:
        per_conn[id(entry)] = per_conn.get(id(entry), 0) + 1
    assert sorted(per_conn.values()) == [4, 8, 8]
    assert sum(new for _, new in got) == 3  # each connection is "new" for its first user
    assert pool.stats()["reused_total"] == 17
    await pool.close()


async def test_released_connections_are_reused() -> None:
    connector = Connector()
    pool = make_pool(connector)
    entry, new = await pool.acquire(A, soon())
    pool.release(entry)
    again, new2 = await pool.acquire(A, soon())
    assert again is entry
    assert new
    assert not new2
    assert pool.stats() | {} == {
        "open": 1,
        "idle": 0,
        "channels": 1,
        "connecting": 0,
        "new_total": 1,
        "reused_total": 1,
        "replaced_total": 0,
    }
    await pool.close()


async def test_a_failed_connect_is_shared_by_its_waiters() -> None:
    connector = Connector(delay_s=0.05, fail=ConnectionRefusedError(111, "refused"))
    pool = make_pool(connector)
    results = await asyncio.gather(
        *(pool.acquire(A, soon()) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    assert len(connector.calls) == 1
    await pool.close()


async def test_full_pool_evicts_the_least_recently_used_idle_connection() -> None:
    connector = Connector()
    pool = make_pool(connector, max_connections=2)
    a, _ = await pool.acquire(A, soon())
    b, _ = await pool.acquire(B, soon())
    pool.release(a)
    pool.release(b)  # b used last: a is the LRU one
    c, _ = await pool.acquire(C, soon())
    assert a.conn.is_closed()
    assert not b.conn.is_closed()
    assert not c.conn.is_closed()
    assert pool.stats()["open"] == 2
    await pool.close()


async def test_full_pool_without_idle_connections_waits_then_times_out() -> None:
    connector = Connector()
    pool = make_pool(connector, max_connections=1)
    a, _ = await pool.acquire(A, soon())
    with pytest.raises(PoolTimeout):
        await pool.acquire(B, soon(0.1))
    waiter = asyncio.create_task(pool.acquire(B, soon()))
    for _ in range(20):  # let it run as far as it can: to waiting for a free slot
        await asyncio.sleep(0)
    assert not waiter.done()
    assert (len(connector.calls), pool.stats()["connecting"]) == (1, 0)  # no connect for B yet
    pool.release(a)
    b, new = await waiter
    assert new
    assert connector.conns[-1].spec is B
    assert not b.closed
    assert a.conn.is_closed()
    await pool.close()


async def test_slow_connect_hits_the_deadline() -> None:
    pool = make_pool(Connector(delay_s=5))
    t0 = time.monotonic()
    with pytest.raises(ConnectTimeout):
        await pool.acquire(A, soon(0.1))
    assert time.monotonic() - t0 < 1
    await pool.close()


async def test_lost_connections_leave_the_pool() -> None:
    connector = Connector()
    pool = make_pool(connector)
    entry, _ = await pool.acquire(A, soon())
    pool.release(entry)
    connector.conns[0].die()
    assert pool.stats()["open"] == 0
    fresh, new = await pool.acquire(A, soon())
    assert new
    assert fresh is not entry
    await pool.close()


async def test_discard_counts_a_replacement() -> None:
    pool = make_pool(Connector())
    entry, _ = await pool.acquire(A, soon())
    pool.discard(entry, replaced=True)
    assert pool.stats()["replaced_total"] == 1
    assert pool.stats()["open"] == 0
    _again, new = await pool.acquire(A, soon(), fresh=True)
    assert new
    await pool.close()


async def test_idle_connections_are_reaped_after_the_ttl() -> None:
    pool = make_pool(Connector(), idle_ttl_s=0.1)
    entry, _ = await pool.acquire(A, soon())
    # The control: B, idle since after A was taken, must be reaped; by then A is past the TTL.
    control, _ = await pool.acquire(B, soon())
    pool.release(control)
    await until(control.conn.is_closed)
    assert pool.stats()["open"] == 1  # in use: never reaped
    pool.release(entry)
    await until(lambda: pool.stats()["open"] == 0)
    await pool.close()


async def test_jump_connections_carry_tunnels_and_stay_while_needed() -> None:
    connector = Connector()
    pool = make_pool(connector, idle_ttl_s=0.1)
    entry, _ = await pool.acquire(BEHIND, soon())
    assert [c.spec.name for c in connector.conns] == ["j", "behind"]
    jump_conn, target_conn = connector.conns
    assert target_conn.tunnel is jump_conn
    assert jump_conn.tunnel is None
    assert entry.key == pool_key(BEHIND)
    assert entry.jump is not None
    # The control: C, idle since after the jump connection was last used, must be reaped; by
    # then the jump connection is past the TTL too.
    control, _ = await pool.acquire(C, soon())
    pool.release(control)
    await until(control.conn.is_closed)
    assert not jump_conn.is_closed()  # idle itself, but a tunnel runs through it
    pool.release(entry)
    await until(lambda: jump_conn.is_closed() and target_conn.is_closed())
    await pool.close()


async def test_close_closes_everything_and_refuses_new_work() -> None:
    connector = Connector()
    pool = make_pool(connector)
    entry, _ = await pool.acquire(A, soon())
    pending = asyncio.create_task(pool.acquire(B, soon()))
    await asyncio.sleep(0)
    await pool.close(timeout_s=1)
    assert entry.conn.is_closed()
    with pytest.raises(PoolClosed):
        await pending
    with pytest.raises(PoolClosed):
        await pool.acquire(A, soon())


async def test_a_busy_connection_is_waited_for_as_long_as_connecting_took() -> None:
    connector = Connector(delay_s=0.2)
    pool = make_pool(connector, max_channels=2)
    held = [await pool.acquire(A, soon()) for _ in range(2)]
    ninth = asyncio.create_task(pool.acquire(A, soon()))
    await asyncio.sleep(0)  # the caller now waits for a channel, not for a handshake
    pool.release(held[0][0])  # a channel frees sooner than a connection would open
    entry, new = await ninth
    assert entry is held[0][0]
    assert not new
    assert len(connector.calls) == 1
    await pool.close()


async def test_a_connection_busy_longer_than_connecting_took_gets_a_sibling() -> None:
    connector = Connector(delay_s=0.05)
    pool = make_pool(connector, max_channels=1)
    first, _ = await pool.acquire(A, soon())
    second, new = await pool.acquire(A, soon())  # nobody releases: the wait ends, one opens
    assert new
    assert second is not first
    assert len(connector.calls) == 2
    await pool.close()


async def test_ready_opens_a_connection_without_claiming_it() -> None:
    connector = Connector()
    pool = make_pool(connector)
    await asyncio.gather(pool.ready(A, soon()), pool.ready(A, soon()))
    assert len(connector.calls) == 1
    assert pool.stats()["channels"] == 0
    entry, new = await pool.acquire(A, soon())
    assert new  # the first command on it is its first use
    assert len(connector.calls) == 1
    pool.release(entry)
    await pool.close()


async def test_connects_ahead_of_a_slot_leave_room_for_hosts_holding_one() -> None:
    # max 3 connections, 1 of them for connects ahead: hosts holding slots never wait for room.
    connector = Connector(delay_s=0.2)
    pool = make_pool(connector, max_connections=3, early_room=1)
    first = asyncio.create_task(pool.ready(A, soon()))
    await until(lambda: len(connector.calls) == 1)
    assert await pool.ready(B, soon()) is False  # declined at once: nothing connected
    assert len(connector.calls) == 1
    got = await asyncio.gather(pool.acquire(B, soon(1.0)), pool.acquire(C, soon(1.0)))
    assert [cast(FakeConn, entry.conn).spec.name for entry, _ in got] == ["b", "c"]
    assert await first is True
    for entry, _ in got:
        pool.release(entry)
    # Its connect done, the room is free again.
    assert await pool.ready(B, soon()) is True
    await pool.close()


async def test_a_full_pool_declines_a_connect_ahead_instead_of_waiting() -> None:
    connector = Connector()
    pool = make_pool(connector, max_connections=1)
    entry, _ = await pool.acquire(A, soon())  # busy: nothing to evict
    async with asyncio.timeout(10):  # not a wait for room until its 60 s deadline
        assert await pool.ready(B, soon(60.0)) is False
    pool.release(entry)
    await pool.close()
