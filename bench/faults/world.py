"""The system a fault lands on: the simulated fleet + the stack's sshd hosts behind one
inventory, and a collector and a sink of the suite's own on a private topic prefix and database.

Every process started here is tracked by its pid and stopped when the world closes (SIGTERM,
then SIGKILL), whatever happened; topics are deleted and the database dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.faults.netcut import Endpoint, Relay, relayed_known_hosts
from bench.measure import health
from stack.env import StackEnv, kafka_admin_environ
from stack.proc import stop_process
from stack.simfleet import RunningFleet
from stack.topics import create_topics, delete_topics

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_GROUP = "sim"
SSHD_GROUP = "sshd"
SESSION_TIMEOUT_MS = 6000  # a SIGKILLed collector's partitions move on after this
SHUTDOWN_GRACE_S = 5.0
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port free on loopback right now (for an ops endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """One `python -m fleetrun collector|sink` subprocess, restartable, stopped at the end."""

    kind: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Start it (again); the ops port stays the same."""
        self.starts += 1
        env = self.env | {f"FLEETRUN_{self.kind.upper()}_OPS_PORT": str(self.port)}
        with self.log.open("ab") as out:
            out.write(f"\n--- start {self.starts} at {time.time():.3f}\n".encode())
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fleetrun",
                self.kind,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                cwd=REPO_ROOT,
            )

    async def wait_healthy(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until /healthz is ok and it holds partitions; raises with the log's path."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if not self.running:
                        raise RuntimeError(f"{self.kind} exited; see {self.log}")
                    doc = await health(self.port)
                    if doc is not None and doc.get("ok") and doc.get("assigned_partitions"):
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise RuntimeError(f"{self.kind} not healthy in {timeout_s}s; see {self.log}") from None

    async def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            async with asyncio.timeout(10):
                await self.proc.wait()

    async def terminate(self, timeout_s: float) -> int | None:
        """SIGTERM; the exit status, or None when it had to be SIGKILLed after `timeout_s`."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                return await self.proc.wait()
        except TimeoutError:
            await self.kill()
            return None

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_process(self.proc, STOP_TIMEOUT_S)


@dataclass
class World:
    """What one fault runs against."""

    stack: StackEnv
    fleet: RunningFleet
    prefix: str
    dsn: str
    collector: Service
    sink: Service
    relay: Relay | None
    sim_hosts: list[str]
    sshd_hosts: list[str]
    sshd_address: dict[str, str]  # sshd host name → its real address (the marker files' names)

    @property
    def bootstrap(self) -> str:
        return self.stack.kafka_bootstrap

    @property
    def requests_topic(self) -> str:
        return self.prefix + "requests"


def inventory_toml(
    fleet: RunningFleet, stack: StackEnv, known_hosts: Path, endpoints: Mapping[str, Endpoint]
) -> str:
    """One inventory: the simulated hosts (group `sim`) and the stack's sshd hosts (`sshd`),
    each at its own address or, with `endpoints`, at its relay listener."""

    def where(name: str, address: str, port: int) -> str:
        e = endpoints.get(name)
        return (
            f'address = "127.0.0.1", port = {e.listen_port}'
            if e
            else (f'address = "{address}", port = {port}')
        )

    lines = [
        "[defaults]",
        'user = "sim"',
        f"known_hosts = {json.dumps(str(known_hosts))}",
        f"client_keys = [{json.dumps(str(fleet.client_key))}]",
        "",
        "[hosts]",
    ]
    lines += [f"{h.name} = {{ {where(h.name, h.address, h.port)} }}" for h in fleet.hosts]
    user, key = json.dumps(stack.ssh_user), json.dumps(str(stack.client_key))
    for h in stack.ssh_hosts:
        lines.append(
            f"{h.name} = {{ {where(h.name, h.address, h.port)}, user = {user},"
            f" client_keys = [{key}] }}"
        )
    lines += [
        "",
        "[groups]",
        f"{SIM_GROUP} = {json.dumps([h.name for h in fleet.hosts])}",
        f"{SSHD_GROUP} = {json.dumps([h.name for h in stack.ssh_hosts])}",
    ]
    return "\n".join(lines) + "\n"


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql, timeout=60)
    finally:
        await conn.close(timeout=10)


async def _drop_database(dsn: str, name: str) -> None:
    for attempt in range(10):
        try:
            await _admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (asyncpg.PostgresError, OSError, TimeoutError):
            # An autovacuum worker FORCE may not end, or the server just restarting: retry.
            if attempt == 9:
                raise
            await asyncio.sleep(1 + attempt)


@contextlib.asynccontextmanager
async def world(
    stack: StackEnv,
    fleet: RunningFleet,
    work: Path,
    name: str,
    *,
    relayed: bool = False,
    sink_settings: Mapping[str, str] | None = None,
    settings: Mapping[str, str] | None = None,
) -> AsyncIterator[World]:
    """A collector and a sink on fresh topics and a fresh database, healthy inside the block."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"faults{tag}."
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    topics = await create_topics(stack.kafka_bootstrap, prefix, timeout_s=60)
    db = f"faults_{tag}"
    await _admin(stack.pg_dsn, f'CREATE DATABASE "{db}"')
    dsn = stack.pg_dsn.rsplit("/", 1)[0] + "/" + db
    relay = Relay() if relayed else None
    services: list[Service] = []
    try:
        endpoints: dict[str, Endpoint] = {}
        known_hosts = fleet.known_hosts
        if relay is not None:
            targets = [(h.name, h.address, h.port) for h in fleet.hosts]
            targets += [(h.name, h.address, h.port) for h in stack.ssh_hosts]
            listened = await relay.listen([(a, p) for _, a, p in targets])
            endpoints = {t[0]: e for t, e in zip(targets, listened, strict=True)}
            known_hosts = work / "known_hosts"
            known_hosts.write_text(
                relayed_known_hosts([fleet.known_hosts, stack.known_hosts], listened)
            )
        else:
            # The sshd hosts' keys beside the fleet's: one known_hosts for the whole inventory.
            known_hosts = work / "known_hosts"
            known_hosts.write_text(fleet.known_hosts.read_text() + stack.known_hosts.read_text())
        inventory = work / "inventory.toml"
        inventory.write_text(inventory_toml(fleet, stack, known_hosts, endpoints))
        base = _base_env(stack, prefix, dsn, inventory, known_hosts, fleet) | dict(settings or {})
        coll_env = base | {
            "FLEETRUN_COLLECTOR_GROUP_ID": prefix + "collector",
            "FLEETRUN_COLLECTOR_ID": f"faults-{name}",
            "FLEETRUN_COLLECTOR_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "FLEETRUN_COLLECTOR_SHUTDOWN_GRACE_S": str(SHUTDOWN_GRACE_S),
            "FLEETRUN_COLLECTOR_MAX_CONNECTIONS": str(len(fleet.hosts) + 100),
        }
        sink_env = base | {
            "FLEETRUN_SINK_GROUP_ID": prefix + "sink",
            "FLEETRUN_SINK_ID": f"faults-{name}",
            "FLEETRUN_SINK_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            **(sink_settings or {}),
        }
        sink = Service("sink", sink_env, work / "sink.log")
        collector = Service("collector", coll_env, work / "collector.log")
        services += [sink, collector]
        await sink.start()
        await collector.start()
        await asyncio.gather(sink.wait_healthy(), collector.wait_healthy())
        yield World(
            stack=stack,
            fleet=fleet,
            prefix=prefix,
            dsn=dsn,
            collector=collector,
            sink=sink,
            relay=relay,
            sim_hosts=[h.name for h in fleet.hosts],
            sshd_hosts=[h.name for h in stack.ssh_hosts],
            sshd_address={h.name: h.address for h in stack.ssh_hosts},
        )
    finally:
        await asyncio.gather(*(s.stop() for s in services), return_exceptions=True)
        if relay is not None:
            await relay.close()
        with contextlib.suppress(Exception):
            await delete_topics(stack.kafka_bootstrap, topics)
        with contextlib.suppress(Exception):
            await _drop_database(stack.pg_dsn, db)


def _base_env(
    stack: StackEnv,
    prefix: str,
    dsn: str,
    inventory: Path,
    known_hosts: Path,
    fleet: RunningFleet,
) -> dict[str, str]:
    # Only this world's settings: not the stack's env file, whose inventory is the sshd one.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    return inherited | {
        "FLEETRUN_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "FLEETRUN_TOPIC_PREFIX": prefix,
        "FLEETRUN_PG_DSN": dsn,
        **kafka_admin_environ(),  # the world's own topics: the stack's super user
        "FLEETRUN_COLLECTOR_INVENTORY": str(inventory),
        "FLEETRUN_COLLECTOR_SSH_KNOWN_HOSTS": str(known_hosts),
        "FLEETRUN_COLLECTOR_SSH_CLIENT_KEYS": str(fleet.client_key),
        "FLEETRUN_COLLECTOR_SSH_USER": "sim",
        "FLEETRUN_COLLECTOR_LOG_LEVEL": "INFO",
        "FLEETRUN_SINK_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
