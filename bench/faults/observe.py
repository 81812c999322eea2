"""What the suite reads back: the output topics as every consumer sees them (read_committed),
the rows in PostgreSQL, the executions counted on the hosts, and what still runs there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import asyncpg
import asyncssh
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

import schemas
from schemas import Result, Status
from stack.env import StackEnv, kafka_options
from stack.simfleet import RunningFleet

log = logging.getLogger("bench.faults")
MARKER = "fleetrun-faults"  # sshd marker files: /tmp/fleetrun-faults-<tag>-<sshd address>


def counted(tag: str, seconds: float) -> str:
    """A shell command for sshd hosts that appends to a per-host marker, then sleeps: every
    real execution leaves a line (`sshd_runs` counts them). The sleep's duration ends in
    digits of the tag, so `ps` finds the `sleep` even if its shell is gone."""
    marker = f"/tmp/{MARKER}-{tag}-$3"
    return f"set -- $SSH_CONNECTION; echo run >> {marker}; sleep {seconds:.3f}{_digits(tag)}"


def _digits(tag: str) -> str:
    return f"{int(tag, 16) % 10**9:09d}"


def marked(tag: str, seconds: float) -> str:
    """The simulated fleet's equivalent: counted per host and tag in its stats."""
    return f"sim:mark {tag} then {seconds}"


@dataclass
class Feed:
    """Reads results, status and dead letters from the start, in the background, stamping each
    record with the moment it was read."""

    bootstrap: str
    prefix: str
    results: list[tuple[float, Result]] = field(default_factory=list)
    statuses: list[tuple[float, Status]] = field(default_factory=list)
    dead_letters: list[schemas.DeadLetter] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Feed:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, KafkaError):
                async with asyncio.timeout(30):
                    await self._task

    async def _run(self) -> None:
        kinds = {self.prefix + k: k for k in ("results", "status", "dlq")}
        consumer = AIOKafkaConsumer(
            *kinds,
            **kafka_options(self.bootstrap),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            while True:
                try:
                    batch = await consumer.getmany(timeout_ms=200)
                except KafkaError as exc:  # the broker-kill fault: wait for it to come back
                    log.info("event=feed_error error=%r", exc)
                    await asyncio.sleep(0.5)
                    continue
                now = time.monotonic()
                for tp, records in batch.items():
                    for r in records:
                        kind = kinds[tp.topic]
                        if kind == "results":
                            self.results.append((now, schemas.decode_result(r.value)))
                        elif kind == "status":
                            self.statuses.append((now, schemas.decode_status(r.value)))
                        else:
                            self.dead_letters.append(schemas.decode_dead_letter(r.value))
        finally:
            with contextlib.suppress(KafkaError, TimeoutError):
                async with asyncio.timeout(10):
                    await consumer.stop()

    def states(self, request_id: str) -> list[str]:
        return [s.state for _, s in self.statuses if s.request_id == request_id]

    def ended(self, request_id: str) -> bool:
        """The request has its `completed` status (a `rejected` one may be a reuse's)."""
        return "completed" in self.states(request_id)

    def first_result(self, request_id: str) -> float | None:
        return next((t for t, r in self.results if r.request_id == request_id), None)

    async def wait(self, check: Callable[[], bool], timeout_s: float) -> bool:
        """Until `check()` holds (True) or `timeout_s` passed (False)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while True:
                    if check():
                        return True
                    await asyncio.sleep(0.1)
        return False


async def pg_rows(dsn: str, request_ids: Iterable[str]) -> Counter[tuple[str, str, int]]:
    """Rows in `results` per (request_id, host, attempt)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT request_id::text AS id, host, attempt FROM results"
            " WHERE request_id = ANY($1::uuid[])",
            list(request_ids),
            timeout=60,
        )
    finally:
        await conn.close(timeout=10)
    return Counter((r["id"], r["host"], int(r["attempt"])) for r in rows)


async def pg_stored(dsn: str, request_id: str) -> bool:
    """Whether a row of `request_id` is in `results` (False while the database is away)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    try:
        value = await conn.fetchval(
            "SELECT 1 FROM results WHERE request_id = $1::uuid LIMIT 1", request_id, timeout=5
        )
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    finally:
        with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError):
            await conn.close(timeout=5)
    return value is not None


async def _ssh(stack: StackEnv, address: str, port: int, command: str) -> str:
    async with (
        asyncio.timeout(20),
        asyncssh.connect(
            address,
            port,
            username=stack.ssh_user,
            client_keys=[str(stack.client_key)],
            known_hosts=str(stack.known_hosts),
            config=[],
        ) as conn,
    ):
        done = await conn.run(command, check=False)
    out = done.stdout
    return out if isinstance(out, str) else (out or b"").decode()


async def sshd_runs(stack: StackEnv, tag: str) -> dict[str, int]:
    """Executions of the `counted` command `tag` on each sshd host (straight over SSH)."""
    script = (
        f"set -- $SSH_CONNECTION; m=/tmp/{MARKER}-{tag}-$3; "
        'if [ -e "$m" ]; then wc -l < "$m"; else echo 0; fi'
    )
    outs = await asyncio.gather(*(_ssh(stack, h.address, h.port, script) for h in stack.ssh_hosts))
    return {h.name: int(o.strip() or 0) for h, o in zip(stack.ssh_hosts, outs, strict=True)}


async def sshd_processes(stack: StackEnv, tags: Iterable[str]) -> list[str]:
    """Processes on the sshd hosts whose command line names one of `tags`: after a fault has
    settled, each one is an orphan (the listing command itself names none of them)."""
    wanted = [n for t in tags for n in (f"{MARKER}-{t}-", _digits(t))]
    outs = await asyncio.gather(
        *(_ssh(stack, h.address, h.port, "ps -eo pid=,args=") for h in stack.ssh_hosts)
    )
    found: dict[str, str] = {}
    for out in outs:  # the hosts may share one process table: count each pid once
        for line in out.splitlines():
            pid, _, args = line.strip().partition(" ")
            if any(w in args for w in wanted):
                found[pid] = args
    return sorted(found.values())


async def clean_markers(stack: StackEnv, tags: Iterable[str]) -> None:
    """Remove the marker files of `tags` from every sshd host."""
    names = " ".join(f"/tmp/{MARKER}-{t}-*" for t in tags)
    if names:
        await asyncio.gather(
            *(_ssh(stack, h.address, h.port, f"rm -f {names}") for h in stack.ssh_hosts)
        )


async def sim_state(fleet: RunningFleet) -> tuple[dict[str, dict[str, int]], int]:
    """The fleet's executions per tag and host, and its commands still running."""
    stats = await fleet.stats(timeout_s=10)
    return dict(stats.get("marks", {})), int(stats["counters"]["running"])
