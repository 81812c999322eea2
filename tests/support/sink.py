"""Helpers for the sink's integration tests: results to produce, the sink as a real process."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from schemas import Result, ResultStatus, encode
from sink.settings import SinkSettings
from stack.env import StackEnv, kafka_options
from stack.topics import committed_total
from tests.support import records
from tests.support.net import http_get
from tests.support.settings import process_env

ROOT = Path(__file__).parents[2]
Key = tuple[str, str, int]  # (request_id, host, attempt)


def make_result(
    request_id: str,
    host: str,
    *,
    attempt: int = 1,
    stdout: bytes | None = None,
    status: ResultStatus = "ok",
    finished_at: datetime | None = None,
) -> Result:
    """A valid result finished now (unless told when); output defaults to a line naming the
    host."""
    return records.make_result(
        request_id,
        host,
        attempt=attempt,
        status=status,
        stdout=stdout if stdout is not None else f"hello from {host}\n".encode(),
        finished_at=finished_at or datetime.now(UTC),
        duration_ms=20,
        collector="collector-test-1",
        labels={"suite": "sink"},
    )


def results_for(n: int, hosts_per_request: int = 10) -> list[Result]:
    """`n` distinct results, `hosts_per_request` hosts per request."""
    out: list[Result] = []
    while len(out) < n:
        rid = str(uuid.uuid4())
        out.extend(
            make_result(rid, f"host{i:04d}.test")
            for i in range(min(hosts_per_request, n - len(out)))
        )
    return out


def key_of(r: Result) -> Key:
    return (r.request_id, r.host, r.attempt)


async def produce(bootstrap: str, topic: str, values: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Publish (key, value) pairs and wait for every acknowledgement."""
    producer = AIOKafkaProducer(
        **kafka_options(bootstrap), acks="all", linger_ms=5, max_request_size=16 << 20
    )
    await producer.start()
    try:
        async with asyncio.timeout(60):
            futures = [await producer.send(topic, value=v, key=k) for k, v in values]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_results(bootstrap: str, topic: str, results: Iterable[Result]) -> None:
    """Publish results keyed by request_id, as the collector does."""
    await produce(bootstrap, topic, ((r.request_id.encode(), encode(r)) for r in results))


async def stored_keys(dsn: str) -> list[Key]:
    """Every (request_id, host, attempt) in results, duplicates included."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT request_id::text, host, attempt FROM results", timeout=30)
    finally:
        await conn.close(timeout=10)
    return [(r[0], r[1], r[2]) for r in rows]


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one query on a fresh connection."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetch(sql, *args, timeout=30)
    finally:
        await conn.close(timeout=10)


async def wait_for_rows(dsn: str, n: int, *, timeout_s: float, table: str = "results") -> int:
    """Wait until `table` holds at least `n` rows (the schema may not exist yet at first)."""
    count = 0
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                count = (await fetch(dsn, f"SELECT count(*) FROM {table}"))[0][0]  # noqa: S608
            except (asyncpg.UndefinedTableError, OSError, asyncpg.CannotConnectNowError):
                count = 0
            if count >= n:
                return int(count)
            await asyncio.sleep(0.2)


async def wait_committed(
    bootstrap: str, group: str, topic: str, total: int, timeout_s: float
) -> None:
    """Wait until the group's committed offsets on `topic` add up to `total`."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await committed_total(bootstrap, group, topic) >= total:
                return
            await asyncio.sleep(0.3)


@dataclass
class SinkProcess:
    """`python -m fleetrun sink` as a child process of the test, with its own log file: the
    stack's env file (FLEETRUN_ENV_FILE), the test's topics and database, and `settings`."""

    stack: StackEnv
    prefix: str
    dsn: str
    log_path: Path
    group: str = ""
    settings: dict[str, object] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    ops_port: int = 0
    _log_offset: int = 0

    def __post_init__(self) -> None:
        self.group = self.group or f"sink-{self.prefix}"

    def env(self) -> dict[str, str]:
        values: dict[str, object] = {
            "topic_prefix": self.prefix,
            "pg_dsn": self.dsn,
            "group_id": self.group,
            "ops_port": 0,
            "session_timeout_ms": 6000,  # a SIGKILLed member leaves the group soon
            "linger_ms": 50,
            "retry_backoff_max_s": 1,
            "shutdown_timeout_s": 15,
        }
        return process_env(SinkSettings, self.stack, values | self.settings)

    async def start(self, *, timeout_s: float = 60) -> None:
        """Spawn and wait until its ops endpoint answers and it has joined the group."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fleetrun",
                "sink",
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        async with asyncio.timeout(timeout_s):
            while True:
                self._check_alive()
                text = self.log()
                m = re.search(r"ops endpoint listening address=127\.0\.0\.1:(\d+)", text)
                if m and "partitions assigned" in text:
                    self.ops_port = int(m.group(1))
                    return
                await asyncio.sleep(0.1)

    def log(self) -> str:
        """What this run of the process has logged so far."""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"sink exited with {self.proc.returncode}:\n{self.log()[-4000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET /metrics or /healthz from the sink's ops endpoint."""
        return await http_get(self.ops_port, path)

    async def metric(self, name: str) -> float:
        """Sum of every sample of a metric (all label values)."""
        _, body = await self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    async def wait_metric(
        self, name: str, predicate: Callable[[float], bool], *, timeout_s: float
    ) -> float:
        """Poll `metric(name)` until `predicate` holds for it and return that value; fail with
        the last value seen if it does not within `timeout_s` (or if the sink exits)."""
        last: float | None = None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._check_alive()
                    last = await self.metric(name)
                    if predicate(last):
                        return last
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(
                f"{name}: last value seen {last}, not the one awaited within {timeout_s}s"
            ) from None

    async def stop(self, *, timeout_s: float = 30) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout_s):
            return await self.proc.wait()

    def suspend(self) -> None:
        """SIGSTOP: the process is frozen where it is (mid-flush, mid-commit)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after suspend()."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            async with asyncio.timeout(10):
                await self.proc.wait()


MakeSink = Callable[..., SinkProcess]  # the `sinks` fixture: settings (field=value) → a sink


def sink_settings_for(stack_env: StackEnv, prefix: str, pg_dsn: str) -> SinkSettings:
    """An in-process sink on a test's own topics (as the stack's super user: no service
    principal's ACLs cover them) and database, flushing within 50 ms."""
    return SinkSettings(
        kafka_bootstrap=stack_env.kafka_bootstrap,
        **stack_env.kafka_admin,
        topic_prefix=prefix,
        group_id=prefix + "sink",
        pg_dsn=SecretStr(pg_dsn),
        ops_port=0,
        linger_ms=50.0,
    )
