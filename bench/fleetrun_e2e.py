"""fleetrun end to end, as deployed: request produced → collector → Kafka → sink → PostgreSQL.

`services()` starts `fleetrun collector` and `fleetrun sink` as subprocesses on a private set
of topics and a fresh database of the running stack, with the simulated fleet's inventory, key
and known_hosts; `run_requests()` produces requests and polls PostgreSQL until every result row
and every request's `completed` status is committed. Each host's latency is its result's
finished_at minus its request's submitted_at. Everything is torn down afterwards (SIGTERM, then
SIGKILL; topics deleted, database dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg
from aiokafka import AIOKafkaProducer

import schemas
from bench.measure import Sampler, assigned, health
from bench.stats import HostResult
from fleetrun.cli.signing import sign_request
from schemas import Request, parse_timestamp
from stack.config import StackConfig
from stack.env import kafka_admin_environ, kafka_options
from stack.kafka import Kafka
from stack.postgres import Postgres
from stack.proc import stop_process
from stack.topics import create_topics, delete_topics

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 45.0
POLL_S = 0.01  # how often PostgreSQL is asked whether every row is in: the resolution of wall times
PRINCIPAL = "bench"

Signer = Callable[[Request], Request]


def request_signer(work: Path) -> tuple[dict[str, str], Signer]:
    """An ed25519 key made by ssh-keygen in `work`, and the collector settings that require
    every request to be signed by it (an allowed-signers file naming it for PRINCIPAL)."""
    key = work / "bench_signing_key"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(key)],
            check=True,
            timeout=60,
        )
    public = key.with_suffix(".pub").read_text().split()
    signers = work / "allowed_signers"
    signers.write_text(f'{PRINCIPAL} namespaces="fleetrun" {public[0]} {public[1]}\n')
    settings = {
        "FLEETRUN_COLLECTOR_ALLOWED_SIGNERS": str(signers),
        "FLEETRUN_COLLECTOR_REQUIRE_SIGNATURES": "true",
    }
    return settings, lambda request: sign_request(request, key)


@dataclass(frozen=True, slots=True)
class Services:
    """The running collector and sink of one benchmark, and where they write."""

    prefix: str
    dsn: str
    bootstrap: str
    collector_pid: int
    sink_pid: int
    collector_port: int
    logs: Path
    collector_pids: tuple[int, ...] = ()  # all of them, with `collectors` > 1 (the first first)
    collector_ports: tuple[int, ...] = ()  # their ops endpoints, in the same order


def free_port() -> int:
    """A TCP port free on loopback right now (for the services' ops endpoints)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(
    service: str, env: dict[str, str], log: Path, port: int, profile_to: Path | None = None
) -> asyncio.subprocess.Process:
    profiler = ["-m", "cProfile", "-o", str(profile_to)] if profile_to is not None else []
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *profiler,
            "-m",
            "fleetrun",
            service,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env | {f"FLEETRUN_{service.upper()}_OPS_PORT": str(port)},
            cwd=REPO_ROOT,
        )


async def _ready(proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
    async with asyncio.timeout(READY_TIMEOUT_S):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"{log.stem} exited with {proc.returncode}; see {log}")
            if assigned(await health(port)):
                return
            await asyncio.sleep(0.2)


async def _admin_dsn_do(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql, timeout=60)
    finally:
        await conn.close(timeout=10)


@contextlib.asynccontextmanager
async def services(
    env_file: Mapping[str, str],
    fleet_dir: Path,
    work: Path,
    *,
    settings: Mapping[str, str] | None = None,
    profile_to: Path | None = None,
    collectors: int = 1,
) -> AsyncIterator[Services]:
    """Collector + sink on private topics and a fresh database, for the fleet in fleet_dir.

    With `profile_to`, the collector runs under cProfile and writes its stats there at exit.
    With `collectors` > 1, that many collectors of one group (`bench`, `bench-2`, …), each
    ready (owning partitions) before this yields.
    """
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench{tag}."
    bootstrap, stack_dsn = env_file["FLEETRUN_KAFKA_BOOTSTRAP"], env_file["FLEETRUN_PG_DSN"]
    topics = await create_topics(bootstrap, prefix, timeout_s=60)
    db = f"bench_{tag}"
    await _admin_dsn_do(stack_dsn, f'CREATE DATABASE "{db}"')
    dsn = stack_dsn.rsplit("/", 1)[0] + "/" + db
    base = dict(os.environ) | {
        "FLEETRUN_KAFKA_BOOTSTRAP": bootstrap,
        "FLEETRUN_TOPIC_PREFIX": prefix,
        "FLEETRUN_PG_DSN": dsn,
        **kafka_admin_environ(),  # the benchmark's own topics: the stack's super user
        "FLEETRUN_COLLECTOR_INVENTORY": str(fleet_dir / "inventory.toml"),
        "FLEETRUN_COLLECTOR_SSH_KNOWN_HOSTS": str(fleet_dir / "known_hosts"),
        "FLEETRUN_COLLECTOR_SSH_CLIENT_KEYS": str(fleet_dir / "client_key"),
        "FLEETRUN_COLLECTOR_SSH_USER": "sim",
        "FLEETRUN_COLLECTOR_LOG_LEVEL": "WARNING",
        "FLEETRUN_SINK_LOG_LEVEL": "WARNING",
    }
    base |= dict(settings or {})
    procs: list[asyncio.subprocess.Process] = []
    try:
        sink_port, coll_port = free_port(), free_port()
        sink_env = base | {"FLEETRUN_SINK_GROUP_ID": prefix + "sink", "FLEETRUN_SINK_ID": "bench"}
        sink = await _start("sink", sink_env, work / "sink.log", sink_port)
        procs.append(sink)
        coll_env = base | {
            "FLEETRUN_COLLECTOR_GROUP_ID": prefix + "collector",
            "FLEETRUN_COLLECTOR_ID": "bench",
        }
        collector = await _start(
            "collector", coll_env, work / "collector.log", coll_port, profile_to
        )
        procs.append(collector)
        more: list[tuple[asyncio.subprocess.Process, int, Path]] = []
        for i in range(2, collectors + 1):
            port, log = free_port(), work / f"collector-{i}.log"
            env = coll_env | {"FLEETRUN_COLLECTOR_ID": f"bench-{i}"}
            more.append((await _start("collector", env, log, port), port, log))
            procs.append(more[-1][0])
        await _ready(sink, sink_port, work / "sink.log")
        await _ready(collector, coll_port, work / "collector.log")
        for proc, port, log in more:
            await _ready(proc, port, log)
        pids = (collector.pid, *(proc.pid for proc, _, _ in more))
        ports = (coll_port, *(port for _, port, _ in more))
        yield Services(
            prefix, dsn, bootstrap, collector.pid, sink.pid, coll_port, work, pids, ports
        )
    finally:
        await asyncio.gather(*(stop_process(p, STOP_TIMEOUT_S) for p in procs))
        with contextlib.suppress(Exception):
            await delete_topics(bootstrap, topics)
        with contextlib.suppress(Exception):
            await _admin_dsn_do(stack_dsn, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@dataclass(frozen=True, slots=True)
class E2E:
    """One measured batch of requests: host results, wall time, per-process usage."""

    results: list[HostResult]
    wall_s: float | None  # None: not every row arrived before the cap
    usage: dict[str, dict[str, float]]
    phases_ms: dict[str, float] | None = None  # one request: where its time went (`phases`)


def stack_pids() -> dict[str, int]:
    """The stack's Kafka broker and PostgreSQL postmaster, when running."""
    cfg = StackConfig.from_env()
    found = {"kafka": Kafka(cfg).pid(), "postgres": Postgres(cfg).pid()}
    return {name: pid for name, pid in found.items() if pid}


async def _counts(conn: asyncpg.Connection, ids: list[str]) -> tuple[int, int]:
    rows = await conn.fetchval(
        "SELECT count(*) FROM results WHERE request_id = ANY($1::uuid[])", ids, timeout=10
    )
    done = await conn.fetchval(
        "SELECT count(*) FROM requests WHERE request_id = ANY($1::uuid[])"
        " AND completed_at IS NOT NULL",
        ids,
        timeout=10,
    )
    return int(rows), int(done)


PHASES: Final = (
    "submitted_to_accepted",  # Kafka to the collector, admission, the ledger's first transaction
    "accepted_to_first_start",  # planning, the first window's started marks committed
    "first_start_to_last_finish",  # SSH: connections, channels, the commands
    "last_finish_to_completed",  # the last results' transaction, the completed status
    "completed_to_rows_seen",  # the sink: read_committed fetch, batch, COPY, commit; our poll
)


async def phases(
    conn: asyncpg.Connection, request: Request, seen_at: float
) -> dict[str, float] | None:
    """Where one request's time went, from the timestamps the pipeline keeps (ms; one clock:
    everything runs on this machine). `seen_at`: when its last row was seen (time.time())."""
    row = await conn.fetchrow(
        "SELECT r.submitted_at, r.accepted_at, r.completed_at,"
        " min(x.started_at) AS first_start, max(x.finished_at) AS last_finish"
        " FROM requests r JOIN results x USING (request_id) WHERE r.request_id = $1::uuid"
        " GROUP BY r.submitted_at, r.accepted_at, r.completed_at",
        request.request_id,
        timeout=30,
    )
    if row is None or None in (row["accepted_at"], row["completed_at"]):
        return None
    submitted = row["submitted_at"] or parse_timestamp(request.submitted_at)
    marks = [
        submitted.timestamp(),
        row["accepted_at"].timestamp(),
        row["first_start"].timestamp(),
        row["last_finish"].timestamp(),
        row["completed_at"].timestamp(),
        seen_at,
    ]
    return {
        name: round((b - a) * 1000, 1)
        for name, (a, b) in zip(PHASES, itertools.pairwise(marks), strict=True)
    }


async def _fetch(conn: asyncpg.Connection, requests: list[Request]) -> list[HostResult]:
    index = {r.request_id: (i + 1, parse_timestamp(r.submitted_at)) for i, r in enumerate(requests)}
    rows = await conn.fetch(
        "SELECT request_id::text AS id, host, status, finished_at FROM results"
        " WHERE request_id = ANY($1::uuid[])",
        list(index),
        timeout=60,
    )
    out = []
    for row in rows:
        rnd, submitted = index[row["id"]]
        ms = (row["finished_at"] - submitted).total_seconds() * 1000
        out.append(HostResult(rnd, row["host"], row["status"], ms))
    return out


async def run_requests(
    svc: Services,
    *,
    targets: list[str],
    hosts: int,
    command: str,
    count: int,
    cap_s: float,
    watch: Mapping[str, int],
    options: Mapping[str, object],
    sign: Signer | None = None,
) -> E2E:
    """Produce `count` requests back to back; wait until all their rows are in PostgreSQL.

    The requests are made (and signed, with `sign`) before the clock starts: signing is the
    requester's cost, verifying it the collector's. (A signed request's latency, counted from
    its submitted_at, includes the signing of the requests made before it.)"""
    producer = AIOKafkaProducer(**kafka_options(svc.bootstrap), acks="all", linger_ms=0)
    await producer.start()
    conn = await asyncpg.connect(svc.dsn, timeout=10)
    sampler = Sampler()
    for name, pid in watch.items():
        sampler.watch(name, pid, tree=name == "postgres")
    wall: float | None = None
    spent: dict[str, float] | None = None
    try:
        # Made (and signed) just before the clock starts: a request's latency counts from its
        # submitted_at, the wall time from t0.
        requests: list[Request] = []
        for _ in range(count):
            req = Request.new(principal=PRINCIPAL, command=command, targets=targets, **options)
            requests.append(await asyncio.to_thread(sign, req) if sign is not None else req)
        with sampler:
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(cap_s):
                    for req in requests:
                        await producer.send(
                            svc.prefix + "requests",
                            schemas.encode(req),
                            key=req.request_id.encode(),
                        )
                    await producer.flush()
                    ids = [r.request_id for r in requests]
                    while True:
                        rows, done = await _counts(conn, ids)
                        if rows >= count * hosts and done >= count:
                            break
                        await asyncio.sleep(POLL_S)
                    wall = time.perf_counter() - t0
                    seen_at = time.time()
            except TimeoutError:
                pass
        results = await _fetch(conn, requests)
        if wall is not None and count == 1:
            spent = await phases(conn, requests[0], seen_at)
    finally:
        await conn.close(timeout=10)
        await producer.stop()
    return E2E(results, wall, sampler.usage(), spent)
