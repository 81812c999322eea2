"""What every fault does around its fault: submit counted requests, wait for them, measure the
recovery with a probe, and once everything has settled, count."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

import schemas
from bench.faults.count import Submitted, Tally, Trial, tally
from bench.faults.observe import (
    Feed,
    clean_markers,
    counted,
    marked,
    pg_rows,
    pg_stored,
    sim_state,
    sshd_processes,
    sshd_runs,
)
from bench.faults.world import SIM_GROUP, SSHD_GROUP, World
from schemas import Request
from stack.env import kafka_options

ENDED_TIMEOUT_S = 180.0  # a request's completed status, after the fault
STORED_TIMEOUT_S = 120.0  # its rows in PostgreSQL
SETTLE_S = 3.0  # after that, catch late duplicates
ORPHAN_TIMEOUT_S = 30.0  # commands still running on the hosts after this are orphans
PROBE_TIMEOUT_S = 180.0


@dataclass
class Ctx:
    """One fault's run: its world, the output feed, its random draws and what it submitted."""

    w: World
    feed: Feed
    rng: random.Random
    producer: AIOKafkaProducer
    submitted: list[Submitted] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)

    def check(self, name: str, ok: bool) -> None:
        """Record whether the fault landed as intended (all trials must agree)."""
        self.checks[name] = self.checks.get(name, True) and ok

    def batch(
        self, seconds: float, sim_concurrency: int, sshd_concurrency: int = 1, **options: Any
    ) -> list[Submitted]:
        """A request to every simulated host and one to every sshd host, each counting its
        executions under a fresh tag and sleeping `seconds`."""
        sim_tag, sshd_tag = _tag(), _tag()
        sim = Request.new(
            principal="faults",
            command=marked(sim_tag, seconds),
            targets=[f"@{SIM_GROUP}"],
            concurrency=min(sim_concurrency, len(self.w.sim_hosts)),
            timeout_s=max(30.0, seconds * 4),
            **options,
        )
        sshd = Request.new(
            principal="faults",
            command=counted(sshd_tag, seconds),
            targets=[f"@{SSHD_GROUP}"],
            concurrency=sshd_concurrency,
            timeout_s=max(30.0, seconds * 4),
            **options,
        )
        return [
            Submitted(sim, tuple(self.w.sim_hosts), sim_tag, "sim"),
            Submitted(sshd, tuple(self.w.sshd_hosts), sshd_tag, "sshd"),
        ]

    async def submit(self, subs: Iterable[Submitted], *, copies: int = 1) -> None:
        """Produce each request record `copies` times (keyed by request_id, as the CLI does)."""
        async with asyncio.timeout(60):
            for s in subs:
                self.submitted.append(s)
                data = schemas.encode(s.request)
                for _ in range(copies):
                    await self.producer.send_and_wait(
                        self.w.requests_topic, data, key=s.request_id.encode()
                    )

    def ended(self, subs: Iterable[Submitted]) -> bool:
        return all(self.feed.ended(s.request_id) for s in subs)

    async def wait_ended(
        self, subs: Iterable[Submitted], timeout_s: float = ENDED_TIMEOUT_S
    ) -> bool:
        subs = list(subs)
        return await self.feed.wait(lambda: self.ended(subs), timeout_s)

    async def wait_started(self, sub: Submitted, at_least: int = 1, timeout_s: float = 60) -> bool:
        """Until the simulated request has begun executing on `at_least` hosts."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while True:
                    marks, _ = await sim_state(self.w.fleet)
                    if len(marks.get(sub.tag, {})) >= at_least:
                        return True
                    await asyncio.sleep(0.1)
        return False

    async def probe(self, trial: Trial) -> None:
        """Submit a small request to one sshd host now; the system has recovered when its row
        is in PostgreSQL (a service healthy and results flowing end to end)."""
        tag = _tag()
        host = self.w.sshd_hosts[0]
        request = Request.new(principal="faults", command=counted(tag, 0), targets=[host])
        await self.submit([Submitted(request, (host,), tag, "sshd")])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                while True:
                    if await pg_stored(self.w.dsn, request.request_id):
                        trial.recovered_at = time.monotonic()
                        return
                    await asyncio.sleep(0.1)

    async def restart_dead(self, trial: Trial) -> None:
        """A service that died under the fault is started again, and the trial says so."""
        for service in (self.w.collector, self.w.sink):
            if not service.running:
                rc = service.proc.returncode if service.proc else None
                trial.note += f" {service.kind} exited (status {rc}) and was restarted;"
                await service.start()
        await asyncio.gather(self.w.collector.wait_healthy(), self.w.sink.wait_healthy())

    async def settle_and_count(self) -> Tally:
        """Wait (bounded) until every request ended and is stored, then count."""
        subs = self.submitted
        expected = [s for s in subs if not s.rejected]
        await self.wait_ended(expected)
        ids = {s.request_id for s in expected}
        want = sum(len(s.hosts) for s in expected)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STORED_TIMEOUT_S):
                while True:
                    if sum((await pg_rows(self.w.dsn, ids)).values()) >= want:
                        break
                    await asyncio.sleep(0.5)
        await asyncio.sleep(SETTLE_S)  # late duplicates, if any, arrive now
        rows = await pg_rows(self.w.dsn, ids)
        runs = await self._runs(subs)
        orphans = await self._orphans(subs)
        results = [r for _, r in self.feed.results]
        statuses = [s for _, s in self.feed.statuses]
        return tally(subs, results, statuses, rows, runs, orphans)

    async def _runs(self, subs: list[Submitted]) -> dict[tuple[str, str], int]:
        marks, _ = await sim_state(self.w.fleet)
        runs: dict[tuple[str, str], int] = {}
        for s in subs:
            if s.where == "sim":
                runs |= {(s.tag, h): n for h, n in marks.get(s.tag, {}).items()}
            else:
                runs |= {(s.tag, h): n for h, n in (await sshd_runs(self.w.stack, s.tag)).items()}
        return runs

    async def _orphans(self, subs: list[Submitted]) -> list[str]:
        tags = [s.tag for s in subs if s.where == "sshd"]
        left: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ORPHAN_TIMEOUT_S):
                while True:
                    _, running = await sim_state(self.w.fleet)
                    left = ["simfleet command"] * running
                    left += await sshd_processes(self.w.stack, tags)
                    if not left:
                        break
                    await asyncio.sleep(0.5)
        return left

    async def cleanup(self) -> None:
        await clean_markers(self.w.stack, [s.tag for s in self.submitted if s.where == "sshd"])


@contextlib.asynccontextmanager
async def fault_ctx(w: World, rng: random.Random) -> AsyncIterator[Ctx]:
    """A Ctx with its feed and producer running inside the block; hosts' markers removed after."""
    producer = AIOKafkaProducer(**kafka_options(w.bootstrap), acks="all", linger_ms=0)
    async with asyncio.timeout(60):
        await producer.start()
    try:
        async with Feed(w.bootstrap, w.prefix) as feed:
            ctx = Ctx(w, feed, rng, producer)
            try:
                yield ctx
            finally:
                with contextlib.suppress(Exception):
                    await ctx.cleanup()
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(30):
                await producer.stop()


def _tag() -> str:
    return uuid.uuid4().hex[:12]


async def at_random(ctx: Ctx, low_s: float, high_s: float, since: float) -> float:
    """Sleep until a random moment in [low_s, high_s] after `since` (the fault's point), and
    return it: drawn from the suite's seeded generator."""
    at = ctx.rng.uniform(low_s, high_s)
    await asyncio.sleep(max(0.0, since + at - time.monotonic()))
    return at


Predicate = Callable[[], bool]
