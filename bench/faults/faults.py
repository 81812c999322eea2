"""The faults: each injects one kind of failure `trials` times into a running world and returns
its trials (when the fault landed, when the system had recovered). Counting happens after."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.faults.count import Submitted, Trial
from bench.faults.ctx import Ctx, at_random
from bench.faults.observe import pg_rows
from bench.faults.world import SHUTDOWN_GRACE_S
from schemas import Request
from stack.config import StackConfig
from stack.kafka import Kafka
from stack.postgres import Postgres
from stack.proc import pid_alive, port_open

PG_OUTAGE_S = 20.0
NETCUT_S = 10.0

FaultFn = Callable[[Ctx, int], Awaitable[list[Trial]]]


@dataclass(frozen=True)
class Fault:
    """A fault of the suite: its function, default trial count and the world it needs."""

    title: str
    run: FaultFn
    trials: int
    relayed: bool = False  # the collector reaches every host through the cutting relay
    sink_settings: dict[str, str] = field(default_factory=dict)


async def _restart_collector(ctx: Ctx, trial: Trial) -> None:
    await ctx.w.collector.start()
    await ctx.w.collector.wait_healthy()
    await ctx.probe(trial)


async def collector_sigkill(ctx: Ctx, trials: int) -> list[Trial]:
    """SIGKILL at a random moment while requests run; restart; let them finish."""
    out = []
    for _ in range(trials):
        subs = ctx.batch(3, sim_concurrency=50)
        await ctx.submit(subs)
        at = await at_random(ctx, 0.5, 9.0, time.monotonic())
        ctx.check("killed while requests ran", not ctx.ended(subs))
        trial = Trial(time.monotonic(), note=f"kill at +{at:.2f}s;")
        await ctx.w.collector.kill()
        await _restart_collector(ctx, trial)
        ctx.check("requests finished after the restart", await ctx.wait_ended(subs))
        out.append(trial)
    return out


async def _sigterm(ctx: Ctx, trials: int, seconds: float) -> list[Trial]:
    out = []
    for _ in range(trials):
        subs = ctx.batch(seconds, sim_concurrency=len(ctx.w.sim_hosts), sshd_concurrency=3)
        await ctx.submit(subs)
        ctx.check("commands started before SIGTERM", await ctx.wait_started(subs[0]))
        at = await at_random(ctx, 0.2, min(1.5, seconds / 2), time.monotonic())
        trial = Trial(time.monotonic(), note=f"SIGTERM {at:.2f}s after the first start;")
        status = await ctx.w.collector.terminate(SHUTDOWN_GRACE_S + 20)
        took = time.monotonic() - trial.fault_at
        trial.note += f" exit status {status} after {took:.1f}s;"
        ctx.check("exited by itself within the grace (+10 s)", status is not None)
        ctx.check("exit status 0", status == 0)
        await _restart_collector(ctx, trial)
        ctx.check("requests finished after the restart", await ctx.wait_ended(subs))
        out.append(trial)
    return out


async def collector_sigterm_short(ctx: Ctx, trials: int) -> list[Trial]:
    """SIGTERM while commands shorter than the grace run: they finish and are reported."""
    return await _sigterm(ctx, trials, seconds=2.0)


async def collector_sigterm_long(ctx: Ctx, trials: int) -> list[Trial]:
    """SIGTERM while commands longer than the grace run: killed on the hosts and reported."""
    return await _sigterm(ctx, trials, seconds=SHUTDOWN_GRACE_S * 4)


async def kafka_kill9(ctx: Ctx, trials: int) -> list[Trial]:
    """The stack's broker SIGKILLed mid-request (its pid file, never by name), then restarted."""
    kafka = Kafka(StackConfig.from_env())
    out = []
    for _ in range(trials):
        subs = ctx.batch(3, sim_concurrency=50)
        await ctx.submit(subs)
        at = await at_random(ctx, 1.0, 8.0, time.monotonic())
        pid = kafka.pid()
        if pid is None:
            raise RuntimeError("the stack's Kafka is not running")
        ctx.check("killed while requests ran", not ctx.ended(subs))
        trial = Trial(time.monotonic(), note=f"kill -9 at +{at:.2f}s;")
        try:
            os.kill(pid, signal.SIGKILL)
            await _gone(kafka, pid)
        finally:  # whatever happened, the stack's broker runs again
            await asyncio.to_thread(kafka.up)
        trial.note += f" broker back after {time.monotonic() - trial.fault_at:.1f}s;"
        await ctx.restart_dead(trial)
        await ctx.probe(trial)
        ctx.check("requests finished after the restart", await ctx.wait_ended(subs))
        out.append(trial)
    return out


async def _gone(kafka: Kafka, pid: int) -> None:
    ports = (kafka.cfg.kafka_port, kafka.cfg.kafka_controller_port)
    async with asyncio.timeout(30):
        # A JVM's threads outlive its main one for a moment after kill -9: its sockets too.
        while True:
            listening = [p for p in ports if port_open("127.0.0.1", p)]
            if not pid_alive(pid, str(kafka.props)) and not listening:
                return
            await asyncio.sleep(0.1)


async def postgres_stop(ctx: Ctx, trials: int) -> list[Trial]:
    """PostgreSQL stopped for 20 s while results flow, then started; the sink catches up."""
    pg = Postgres(StackConfig.from_env())
    out = []
    for _ in range(trials):
        subs = ctx.batch(1, sim_concurrency=20)
        await ctx.submit(subs)
        at = await at_random(ctx, 1.0, 4.0, time.monotonic())
        trial = Trial(time.monotonic(), note=f"stop at +{at:.2f}s;")
        try:
            await asyncio.to_thread(pg.down)
            await asyncio.sleep(max(0.0, trial.fault_at + PG_OUTAGE_S - time.monotonic()))
        finally:  # whatever happened, the stack's database runs again
            await asyncio.to_thread(pg.up)
        trial.note += f" database back after {time.monotonic() - trial.fault_at:.1f}s;"
        ctx.check("the sink lived through the outage", ctx.w.sink.running)
        await ctx.restart_dead(trial)
        await ctx.probe(trial)
        ctx.check("requests finished", await ctx.wait_ended(subs))
        out.append(trial)
    return out


async def sink_sigkill(ctx: Ctx, trials: int) -> list[Trial]:
    """The sink SIGKILLed while results stream in (mid-batch), then restarted."""
    out = []
    for _ in range(trials):
        subs = ctx.batch(0.5, sim_concurrency=10)
        await ctx.submit(subs)
        ids = {s.request_id for s in subs}
        first = await ctx.feed.wait(functools.partial(_any_result, ctx, ids), 60)
        at = await at_random(ctx, 0.2, 1.5, time.monotonic())
        published = sum(1 for _, r in ctx.feed.results if r.request_id in ids)
        stored = sum((await pg_rows(ctx.w.dsn, ids)).values())
        trial = Trial(
            time.monotonic(),
            note=f"kill {at:.2f}s after the first result ({published} published, {stored} stored);",
        )
        ctx.check("killed while results streamed in", first and not ctx.ended(subs))
        await ctx.w.sink.kill()
        await ctx.w.sink.start()
        await ctx.w.sink.wait_healthy()
        await ctx.probe(trial)
        ctx.check("requests finished", await ctx.wait_ended(subs))
        out.append(trial)
    return out


async def netcut(ctx: Ctx, trials: int) -> list[Trial]:
    """Every byte between the collector and every host held for 10 s mid-request."""
    relay = ctx.w.relay
    assert relay is not None
    out = []
    for _ in range(trials):
        subs = ctx.batch(5, sim_concurrency=100)
        await ctx.submit(subs)
        ctx.check("commands started before the cut", await ctx.wait_started(subs[0]))
        at = await at_random(ctx, 0.5, 3.0, time.monotonic())
        ctx.check("cut while requests ran", not ctx.ended(subs))
        trial = Trial(time.monotonic(), note=f"cut at +{at:.2f}s after the first start;")
        relay.cut()
        try:
            await asyncio.sleep(NETCUT_S)
        finally:
            relay.heal()
        ctx.check("the collector lived through the cut", ctx.w.collector.running)
        await ctx.restart_dead(trial)
        await ctx.probe(trial)
        ctx.check("requests finished", await ctx.wait_ended(subs))
        out.append(trial)
    return out


async def duplicate_record(ctx: Ctx, trials: int) -> list[Trial]:
    """The same request record twice (a producer retry): it runs once."""
    out = []
    for _ in range(trials):
        subs = ctx.batch(2, sim_concurrency=len(ctx.w.sim_hosts), sshd_concurrency=3)
        await ctx.submit(subs, copies=2)
        ctx.check("requests finished", await ctx.wait_ended(subs))
        out.append(Trial(time.monotonic()))
    return out


async def reused_id(ctx: Ctx, trials: int) -> list[Trial]:
    """Another request under a request_id already used: rejected, runs nowhere. Even trials
    send it after the first finished, odd ones while the first still runs."""
    out = []
    for i in range(trials):
        subs = ctx.batch(2, sim_concurrency=len(ctx.w.sim_hosts), sshd_concurrency=3)
        await ctx.submit(subs)
        if i % 2 == 0:
            await ctx.wait_ended(subs)
        else:
            await ctx.wait_started(subs[0])
        others = [_reuse(ctx, s) for s in subs]
        await ctx.submit(others)
        ok = await ctx.feed.wait(functools.partial(_all_rejected, ctx, others), 60)
        ctx.check("the reuse was rejected", ok)
        ctx.check("requests finished", await ctx.wait_ended(subs))
        out.append(
            Trial(
                time.monotonic(),
                note="reused after it finished;" if i % 2 == 0 else "reused while it ran;",
            )
        )
    return out


def _any_result(ctx: Ctx, ids: set[str]) -> bool:
    return any(r.request_id in ids for _, r in ctx.feed.results)


def _all_rejected(ctx: Ctx, subs: list[Submitted]) -> bool:
    return all("rejected" in ctx.feed.states(s.request_id) for s in subs)


def _reuse(ctx: Ctx, first: Submitted) -> Submitted:
    """A record with `first`'s request_id and other content: another command and tag."""
    other = ctx.batch(1, sim_concurrency=5)[0 if first.where == "sim" else 1]
    request = Request.new(
        principal="someone-else",
        command=other.request.command,
        targets=first.request.targets,
        request_id=first.request_id,
    )
    return Submitted(request, first.hosts, other.tag, first.where, rejected=True)


FAULTS: dict[str, Fault] = {
    "collector-sigkill": Fault("collector SIGKILL mid-request, restarted", collector_sigkill, 10),
    "collector-sigterm-short": Fault(
        "collector SIGTERM, commands shorter than the grace", collector_sigterm_short, 2
    ),
    "collector-sigterm-long": Fault(
        "collector SIGTERM, commands longer than the grace", collector_sigterm_long, 2
    ),
    "kafka-kill9": Fault("Kafka broker kill -9, restarted", kafka_kill9, 2),
    "postgres-stop-20s": Fault("PostgreSQL stopped 20 s", postgres_stop, 1),
    "sink-sigkill": Fault(
        "sink SIGKILL mid-batch, restarted",
        sink_sigkill,
        3,
        # Batches that linger: a kill finds rows read from Kafka and not yet in PostgreSQL.
        sink_settings={"FLEETRUN_SINK_LINGER_MS": "1000"},
    ),
    "netcut-10s": Fault("collector cut off from the hosts 10 s", netcut, 2, relayed=True),
    "duplicate-record": Fault("the same request record twice", duplicate_record, 3),
    "reused-id": Fault("a request_id reused with other content", reused_id, 2),
}
