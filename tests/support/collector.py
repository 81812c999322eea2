"""Collector test helpers: run it in-process or as `fleetrun collector`, submit, read back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

import schemas
from collector.inventory import Inventory
from collector.metrics import CollectorMetrics
from collector.service import Collector, Summary
from collector.settings import CollectorSettings
from collector.ssh import SshExecutor
from schemas import Request, Result, Status
from stack.env import StackEnv, kafka_options
from tests.support.net import free_port, http_get
from tests.support.settings import process_env, stack_ssh

REPO_ROOT = Path(__file__).resolve().parents[2]


def collector_settings(prefix: str, **overrides: Any) -> CollectorSettings:
    """Settings for the stack (Kafka, its sshd hosts), on the test's topics and its own
    consumer group."""
    return CollectorSettings(**(_collector_fields(StackEnv.load(), prefix) | overrides))


def _collector_fields(env: StackEnv, prefix: str) -> dict[str, Any]:
    return {
        "kafka_bootstrap": env.kafka_bootstrap,
        **env.kafka_admin,
        **stack_ssh(env),
        "topic_prefix": prefix,
        "group_id": prefix + "collector",
        "shutdown_grace_s": 10.0,
        "publish_timeout_s": 30.0,
        "ops_port": 0,
    }


@dataclass
class InProcess:
    """A collector running as a task of the test's event loop."""

    collector: Collector[Any]
    metrics: CollectorMetrics
    executor: SshExecutor
    task: asyncio.Task[Summary]

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """A metric's current value (0 when it was never set)."""
        value = self.metrics.registry.get_sample_value(name, dict(labels or {}))
        return value or 0.0


@contextlib.asynccontextmanager
async def running_collector(settings: CollectorSettings) -> AsyncIterator[InProcess]:
    """Run a real collector (real SSH executor) until the block exits; then stop it in order."""
    metrics = CollectorMetrics()
    inventory = Inventory.load(settings.inventory, settings)
    executor = SshExecutor(settings, metrics, inventory)
    collector = Collector(settings, executor=executor, inventory=inventory, metrics=metrics)
    task = asyncio.create_task(collector.run())
    running = InProcess(collector, metrics, executor, task)
    try:
        async with asyncio.timeout(30):
            while not collector.health()[0]:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        yield running
    finally:
        collector.stop()
        async with asyncio.timeout(settings.shutdown_grace_s + 30):
            await task


async def submit(
    bootstrap: str,
    topic: str,
    values: Iterable[Request | bytes],
    *,
    key: bytes | None = None,
    partition: int | None = None,
) -> list[tuple[int, int]]:
    """Produce requests (or raw bytes) and return each record's (partition, offset)."""
    producer = AIOKafkaProducer(**kafka_options(bootstrap), acks="all")
    await producer.start()
    placed = []
    try:
        async with asyncio.timeout(30):
            for value in values:
                k: bytes | None = key
                if isinstance(value, Request):
                    k, data = value.request_id.encode(), schemas.encode(value)
                else:
                    data = value
                meta = await producer.send_and_wait(topic, data, key=k, partition=partition)
                placed.append((meta.partition, meta.offset))
    finally:
        await producer.stop()
    return placed


@dataclass
class Seen:
    """Everything read back from the results, status and dlq topics."""

    results: list[Result] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    dead_letters: list[schemas.DeadLetter] = field(default_factory=list)

    def for_request(self, request_id: str) -> tuple[list[Result], list[Status]]:
        return (
            [r for r in self.results if r.request_id == request_id],
            [s for s in self.statuses if s.request_id == request_id],
        )

    def states(self, request_id: str) -> list[str]:
        return [s.state for s in self.statuses if s.request_id == request_id]

    def completed(self, request_id: str) -> Status | None:
        done = [s for s in self.statuses if s.request_id == request_id and s.state == "completed"]
        return done[0] if done else None


async def read_until(
    bootstrap: str,
    prefix: str,
    done: Callable[[Seen], bool],
    *,
    timeout_s: float = 30.0,
    settle_s: float = 0.0,
) -> Seen:
    """Read the output topics from the beginning until `done(seen)`, then `settle_s` more."""
    topics = {prefix + "results": "results", prefix + "status": "status", prefix + "dlq": "dlq"}
    consumer = AIOKafkaConsumer(
        *topics,
        **kafka_options(bootstrap),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",  # what every consumer of the collector's topics sees
    )
    seen = Seen()
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            while not done(seen):
                await _read_batch(consumer, topics, seen)
            loop = asyncio.get_running_loop()
            until = loop.time() + settle_s  # catch anything extra (duplicates) that follows
            while loop.time() < until:
                await _read_batch(consumer, topics, seen)
    finally:
        await consumer.stop()
    return seen


async def _read_batch(consumer: AIOKafkaConsumer, topics: dict[str, str], seen: Seen) -> None:
    batch = await consumer.getmany(timeout_ms=200)
    for tp, records in batch.items():
        for r in records:
            kind = topics[tp.topic]
            if kind == "results":
                seen.results.append(schemas.decode_result(r.value))
            elif kind == "status":
                seen.statuses.append(schemas.decode_status(r.value))
            else:
                seen.dead_letters.append(schemas.decode_dead_letter(r.value))


def finished(*request_ids: str) -> Callable[[Seen], bool]:
    """Done when every request has a completed or rejected status."""

    def check(seen: Seen) -> bool:
        return all(
            any(s.state in ("completed", "rejected") for s in seen.statuses if s.request_id == rid)
            for rid in request_ids
        )

    return check


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on `topic` (partition → next offset to read)."""
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap), request_timeout_ms=10_000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def wait_committed(
    bootstrap: str, group: str, topic: str, want: Mapping[int, int], timeout_s: float = 15.0
) -> dict[int, int]:
    """Poll until the group has committed at least `want` per partition."""
    got: dict[int, int] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                got = await committed(bootstrap, group, topic)
                if all(got.get(p, -1) >= o for p, o in want.items()):
                    return got
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"committed {got}, wanted at least {dict(want)}") from None


def counts_by_host(results: Iterable[Result]) -> Counter[str]:
    return Counter(r.host for r in results)


async def ssh_run(host: str, port: int, user: str, key: Path, known_hosts: Path, cmd: str) -> str:
    """Run `cmd` on a test host directly (not through the collector) and return stdout."""
    async with asyncio.timeout(20):
        async with asyncssh.connect(
            host,
            port,
            username=user,
            client_keys=[str(key)],
            known_hosts=str(known_hosts),
            config=[],
        ) as conn:
            result = await conn.run(cmd, check=False)
    out = result.stdout
    return out if isinstance(out, str) else (out or b"").decode()


async def ssh_all(env: StackEnv, cmd: str) -> dict[str, str]:
    """Run `cmd` on every stack host directly (not through the collector); name → stdout."""
    outs = await asyncio.gather(
        *(
            ssh_run(h.address, h.port, env.ssh_user, env.client_key, env.known_hosts, cmd)
            for h in env.ssh_hosts
        )
    )
    return {h.name: out for h, out in zip(env.ssh_hosts, outs, strict=True)}


def counted(name: str, tag: str, then: str) -> str:
    """A command that appends a line to a per-host marker before running `then`, so that
    `runs()` can count real executions: /tmp/fleetrun-{name}-{tag}-<sshd address reached>."""
    return f"set -- $SSH_CONNECTION; echo run >> /tmp/fleetrun-{name}-{tag}-$3; {then}"


async def runs(env: StackEnv, name: str, tag: str) -> dict[str, int]:
    """How many times a `counted` command started on each of the stack's sshd hosts."""
    out = await ssh_all(
        env,
        f"set -- $SSH_CONNECTION; m=/tmp/fleetrun-{name}-{tag}-$3; "
        'if [ -e "$m" ]; then wc -l < "$m"; else echo 0; fi',
    )
    return {host: int(text.strip() or 0) for host, text in out.items()}


async def wait_runs(
    env: StackEnv, tag: str, names: Iterable[str], total: int, timeout_s: float = 30.0
) -> None:
    """Until `counted` commands `names` have started `total` times in all (fails after
    `timeout_s`)."""
    names = list(names)
    async with asyncio.timeout(timeout_s):
        while True:
            started = 0
            for name in names:
                started += sum((await runs(env, name, tag)).values())
            if started >= total:
                return
            await asyncio.sleep(0.1)


def hangs_until_redelivered(name: str, tag: str) -> str:
    """A command that hangs (60 s) the first time it runs on a host and prints "again" when it
    runs there again: a marker per host, /tmp/fleetrun-{name}-{tag}-<sshd address it reached>."""
    return (
        f"set -- $SSH_CONNECTION; m=/tmp/fleetrun-{name}-{tag}-$3; "
        'if [ -e "$m" ]; then echo again; else touch "$m"; sleep 60; fi'
    )


@dataclass
class Subprocess:
    """`python -m fleetrun collector` started by a test."""

    proc: asyncio.subprocess.Process
    ops_port: int
    log: Path

    async def health(self) -> dict[str, Any] | None:
        try:
            _, body = await http_get(self.ops_port, "/healthz", timeout_s=2)
        except (OSError, TimeoutError):
            return None
        doc: dict[str, Any] = orjson.loads(body)
        return doc

    async def metrics_text(self) -> str:
        _, body = await http_get(self.ops_port, "/metrics", timeout_s=5)
        return body.decode()

    async def wait_healthy(self, timeout_s: float = 90.0, *, assigned: bool = True) -> None:
        # Generous: on the SASL/TLS stack a collector's first ledger read (one transactional
        # producer per partition) has been seen to take ~30 s once in a while (being looked into).
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if self.proc.returncode is not None:
                        raise AssertionError(f"collector exited early; see {self.log}")
                    doc = await self.health()
                    if doc and doc["ok"] and (doc["assigned_partitions"] or not assigned):
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"collector not healthy in {timeout_s}s; see {self.log}") from None

    async def terminate(self, timeout_s: float) -> int:
        """SIGTERM, then wait for the exit status (SIGKILL and fail after `timeout_s`)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                return await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"collector ignored SIGTERM for {timeout_s}s; see {self.log}"
            ) from None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_log(self, text: str, timeout_s: float = 10.0) -> None:
        """Until `text` appears in the collector's log."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if text in self.log_text():
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"{text!r} not logged in {timeout_s}s; see {self.log}") from None


async def spawn_collector(prefix: str, log: Path, **settings: Any) -> Subprocess:
    """Start `python -m fleetrun collector` on the test's topics with the stack's env file named
    by FLEETRUN_ENV_FILE; the SSH settings and `settings` are passed as its variables."""
    port = free_port()
    stack = StackEnv.load()
    fields = _collector_fields(stack, prefix) | {"ops_port": port, "log_level": "INFO"}
    del fields["kafka_bootstrap"]  # from the env file
    env = process_env(CollectorSettings, stack, fields | settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fleetrun",
            "collector",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            cwd=str(REPO_ROOT),
        )
    return Subprocess(proc, port, log)


@contextlib.asynccontextmanager
async def collector_process(prefix: str, log: Path, **settings: Any) -> AsyncIterator[Subprocess]:
    """A collector subprocess that is healthy inside the block and stopped (SIGTERM) after it."""
    sub = await spawn_collector(prefix, log, **settings)
    try:
        await sub.wait_healthy()
        yield sub
    finally:
        if sub.proc.returncode is None:
            with contextlib.suppress(AssertionError):
                await sub.terminate(float(settings.get("shutdown_grace_s", 10)) + 20)


def request_partitions(placed: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Offsets to expect committed after these records finish: partition → last offset + 1."""
    want: dict[int, int] = {}
    for partition, offset in placed:
        want[partition] = max(want.get(partition, 0), offset + 1)
    return want
