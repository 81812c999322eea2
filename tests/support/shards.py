"""Helpers for tests of sharded requests: collector processes on a simulated fleet."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from stack.simfleet.runner import RunningFleet
from tests.support.collector import Subprocess, spawn_collector

PARTITIONS = 6  # stack.config.TOPIC_PARTITIONS: requests and shards


def fleet_settings(fleet: RunningFleet, **overrides: Any) -> dict[str, Any]:
    """Collector settings that reach the simulated fleet (its inventory names its keys)."""
    return {
        "inventory": str(fleet.inventory),
        "ssh_known_hosts": str(fleet.known_hosts),
        "ssh_client_keys": str(fleet.client_key),
        # A SIGKILLed member's partitions move after this; the default 30 s is long for a test.
        "session_timeout_ms": 6_000,
        "rebalance_drain_s": 2.0,
        **overrides,
    }


@contextlib.asynccontextmanager
async def collector_group(
    prefix: str, logs: Path, fleet: RunningFleet, count: int, **settings: Any
) -> AsyncIterator[list[Subprocess]]:
    """`count` collector processes of one group, each owning requests and shards partitions."""
    subs = [
        await spawn_collector(
            prefix, logs / f"c{i}.log", **(fleet_settings(fleet, id=f"c{i}") | settings)
        )
        for i in range(count)
    ]
    try:
        await wait_balanced(subs)
        yield subs
    finally:
        await asyncio.gather(*(_stop(s) for s in subs))


async def _stop(sub: Subprocess) -> None:
    if sub.proc.returncode is None:
        with contextlib.suppress(AssertionError):
            await sub.terminate(40)


async def wait_balanced(subs: Sequence[Subprocess], timeout_s: float = 90.0) -> None:
    """Until every partition of both topics is ready on exactly one live member, each member
    holding some of each (the group has settled with all of them)."""
    last: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                live = [s for s in subs if s.proc.returncode is None]
                docs = [await s.health() for s in live]
                last = docs
                if all(d and d["ok"] for d in docs) and _balanced(docs):  # type: ignore[arg-type]
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"collector group not balanced in {timeout_s}s: {last}") from None


def _balanced(docs: list[dict[str, Any]]) -> bool:
    for key in ("assigned_partitions", "shard_partitions"):
        owned = Counter(p for d in docs for p in d[key])
        if sorted(owned) != list(range(PARTITIONS)) or set(owned.values()) != {1}:
            return False
        if not all(d[key] for d in docs):
            return False
    return True


async def owner_of(subs: Sequence[Subprocess], partition: int) -> Subprocess:
    """The member whose requests partitions include `partition`."""
    for sub in subs:
        doc = await sub.health()
        if doc and partition in doc["assigned_partitions"]:
            return sub
    raise AssertionError(f"no collector owns requests partition {partition}")
