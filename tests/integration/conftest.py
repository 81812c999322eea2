"""Fixtures that attach to the running local stack (`make stack-up`); nothing here starts it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from collector.inventory import Inventory
from collector.metrics import CollectorMetrics
from collector.settings import CollectorSettings
from collector.ssh import SshExecutor
from stack.env import StackEnv
from stack.proc import port_open
from stack.topics import create_topics, delete_topics
from tests.support.collector import ssh_all
from tests.support.kafka import Topics, unique_prefix
from tests.support.sink import MakeSink, SinkProcess
from tests.support.sshexec import MakeExecutor, executor


@pytest.fixture(scope="session")
def stack_env() -> StackEnv:
    """The stack's settings; fails (never skips) with what to run when the stack is not up."""
    try:
        env = StackEnv.load()
    except FileNotFoundError as exc:
        pytest.fail(f"the local stack has not run here ({exc.filename}); run `make stack-up`")
    host, _, port = env.kafka_bootstrap.rpartition(":")
    down = [] if port_open(host, int(port)) else [f"kafka {env.kafka_bootstrap}"]
    pg_port = int(env.pg_dsn.rsplit(":", 1)[1].split("/", 1)[0])
    if not port_open("127.0.0.1", pg_port):
        down.append(f"postgres 127.0.0.1:{pg_port}")
    down += [f"sshd {h.name}" for h in env.ssh_hosts if not port_open(h.address, h.port)]
    if down:
        pytest.fail(f"stack services not reachable: {', '.join(down)}; run `make stack-up`")
    return env


@pytest.fixture
async def remote_tag(stack_env: StackEnv) -> AsyncIterator[str]:
    """A unique tag for files a test leaves on the stack's hosts, named
    /tmp/fleetrun-<what>-<tag>-<anything>; every host's are removed at teardown, pass or fail."""
    tag = uuid.uuid4().hex
    yield tag
    await ssh_all(stack_env, f"rm -f /tmp/fleetrun-*-{tag}-*")


@pytest.fixture
async def topics(stack_env: StackEnv) -> AsyncIterator[Topics]:
    """requests/results/status/dlq under a prefix no other test uses; deleted afterwards."""
    prefix = unique_prefix()
    names = await create_topics(stack_env.kafka_bootstrap, prefix)
    yield Topics(prefix, stack_env.kafka_bootstrap)
    await delete_topics(stack_env.kafka_bootstrap, names)


@pytest.fixture
async def pg_dsn(stack_env: StackEnv) -> AsyncIterator[str]:
    """DSN of a fresh database for this test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(stack_env.pg_dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"', timeout=30)
    finally:
        await admin.close(timeout=10)
    yield stack_env.pg_dsn.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(stack_env.pg_dsn, timeout=10)
    try:
        for attempt in range(10):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=30)
                break
            except asyncpg.InsufficientPrivilegeError:
                # FORCE may not end an autovacuum worker (not our role) busy with the test's
                # fresh rows; it is done in moments. The last attempt lets the error through.
                if attempt == 9:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
    finally:
        await admin.close(timeout=10)


@pytest.fixture
async def make_executor() -> AsyncIterator[MakeExecutor]:
    """Builds executors like `sshexec.executor`; every one is closed at teardown, even when
    closing another fails."""
    made: list[SshExecutor] = []

    def make(
        settings: CollectorSettings,
        inventory: Inventory | None = None,
        metrics: CollectorMetrics | None = None,
    ) -> SshExecutor:
        e = executor(settings, inventory, metrics)
        made.append(e)
        return e

    yield make
    async with contextlib.AsyncExitStack() as closing:
        for e in made:
            closing.push_async_callback(e.close)


@pytest.fixture
async def sinks(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, tmp_path: Path
) -> AsyncIterator[MakeSink]:
    """Sink processes for this test's topics and database (keyword arguments: more of their
    settings); killed at the end if still up."""
    made: list[SinkProcess] = []

    def make(**settings: object) -> SinkProcess:
        sink = SinkProcess(
            stack_env, topics.prefix, pg_dsn, tmp_path / f"sink{len(made)}.log", settings=settings
        )
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.kill()
