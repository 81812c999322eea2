"""FairSessions: the session cap shared by weighted deficit round robin."""

from __future__ import annotations

import asyncio

import pytest

from collector.fairshare import FairSessions


async def _queue(
    gate: FairSessions, order: list[str], who: list[tuple[str, str]]
) -> list[asyncio.Task[None]]:
    """One waiter per (principal, request); each records its principal:request when granted."""

    async def one(principal: str, request: str) -> None:
        await gate.acquire(principal, request)
        order.append(f"{principal}:{request}")

    tasks = []
    for principal, request in who:
        tasks.append(asyncio.create_task(one(principal, request)))
        await asyncio.sleep(0)  # queued in this order
    return tasks


async def _drain(gate: FairSessions, tasks: list[asyncio.Task[None]]) -> None:
    for _ in tasks:
        gate.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)


async def test_no_wait_below_the_cap() -> None:
    gate = FairSessions(2)
    await gate.acquire("a", "r1")
    await gate.acquire("b", "r2")
    assert (gate.in_use, gate.waiting) == (2, 0)
    gate.release()
    assert gate.in_use == 1


async def test_a_small_request_does_not_wait_behind_a_big_one() -> None:
    gate = FairSessions(1)
    await gate.acquire("batch", "big")  # the cap is reached
    order: list[str] = []
    tasks = await _queue(gate, order, [("batch", "big")] * 50 + [("alice", "small")] * 3)
    await _drain(gate, tasks)
    # FIFO would serve alice 51st; round robin alternates the two principals.
    assert order[:6] == ["batch:big", "alice:small"] * 3


async def test_weights_are_sessions_per_round() -> None:
    gate = FairSessions(1, {"ops": 3})
    await gate.acquire("x", "held")
    order: list[str] = []
    tasks = await _queue(gate, order, [("ops", "o")] * 6 + [("dev", "d")] * 6)
    await _drain(gate, tasks)
    principals = [o.split(":")[0] for o in order]
    assert principals[:8] == ["ops", "ops", "ops", "dev", "ops", "ops", "ops", "dev"]


async def test_requests_of_one_principal_take_turns() -> None:
    gate = FairSessions(1)
    await gate.acquire("alice", "held")
    order: list[str] = []
    tasks = await _queue(gate, order, [("alice", "big")] * 4 + [("alice", "small")] * 2)
    await _drain(gate, tasks)
    assert order[:4] == ["alice:big", "alice:small", "alice:big", "alice:small"]


async def test_a_cancelled_waiter_gives_up_its_place_and_leaks_nothing() -> None:
    gate = FairSessions(1)
    await gate.acquire("a", "r")
    order: list[str] = []
    tasks = await _queue(gate, order, [("b", "r2"), ("c", "r3")])
    tasks[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    gate.release()
    await tasks[1]
    assert order == ["c:r3"]
    gate.release()
    assert (gate.in_use, gate.waiting) == (0, 0)


async def test_cancelled_after_the_grant_passes_the_session_on() -> None:
    gate = FairSessions(1)
    await gate.acquire("a", "r")
    order: list[str] = []
    tasks = await _queue(gate, order, [("b", "r2"), ("c", "r3")])
    gate.release()  # granted to b ...
    tasks[0].cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    await tasks[1]
    assert order == ["c:r3"]
    assert gate.in_use == 1
