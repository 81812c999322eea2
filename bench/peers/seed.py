"""Peer: the seed's approach, written as the naive script is — the "before" of fleetrun.

One `asyncssh.connect` per host and command, every host at once with `asyncio.gather`, no
connect or command deadline (asyncssh's defaults: no connect timeout, 120 s login timeout),
two retries on a connection error, and each result stored in SQLite with its own INSERT and
commit (synchronous, on the event loop, default journal and sync settings) — as the original
seed stored rows. Key auth with the fleet's known_hosts. Rounds run one after another, each a
new request id. `--preload` reads the key and known_hosts once instead of passing their paths
to every connect (asyncssh then re-parses known_hosts — one line per fleet host — for each
connection, which is what the script as written pays). Host results are read back from the
SQLite file by the harness; this process only writes `{"round": r, "wall_s": s}` lines.

    python -m bench.peers.seed --fleet-dir DIR --out OUT.jsonl --work-dir DIR [--rounds N]
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

from bench.peers.common import Fleet, Recorder, parser

RETRIES = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    request_id TEXT, host TEXT, status TEXT, exit_status INTEGER,
    stdout TEXT, stderr TEXT, error TEXT, submitted_at REAL, finished_at REAL
)
"""


def database(work_dir: Path) -> Path:
    """Where the seed keeps its results."""
    return work_dir / "seed.sqlite3"


@dataclass(frozen=True, slots=True)
class Auth:
    """What the script passes to every connect: file paths, or keys read once (--preload)."""

    client_keys: list[str] | list[asyncssh.SSHKey]
    known_hosts: str | asyncssh.SSHKnownHosts

    @classmethod
    def of(cls, fleet: Fleet, preload: bool) -> Auth:
        if preload:
            keys = [asyncssh.read_private_key(str(fleet.client_key))]
            return cls(keys, asyncssh.read_known_hosts(str(fleet.known_hosts)))
        return cls([str(fleet.client_key)], str(fleet.known_hosts))


async def run_host(
    db: sqlite3.Connection,
    fleet: Fleet,
    auth: Auth,
    request_id: str,
    submitted: float,
    i: int,
    command: str,
) -> None:
    host = fleet.hosts[i]
    stdout = stderr = error = None
    code: int | None = None
    for attempt in range(RETRIES + 1):
        try:
            async with asyncssh.connect(
                host.address,
                host.port,
                username=fleet.user,
                client_keys=auth.client_keys,
                known_hosts=auth.known_hosts,
            ) as conn:
                result = await conn.run(command)
            stdout, stderr, code = str(result.stdout), str(result.stderr), result.exit_status
            error = None
            break
        except (OSError, asyncssh.Error) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, asyncssh.PermissionDenied | asyncssh.HostKeyNotVerifiable):
                break
            if attempt < RETRIES:
                await asyncio.sleep(1)
    status = "error" if error else "ok" if code == 0 else "failed"
    db.execute(
        "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (request_id, host.name, status, code, stdout, stderr, error, submitted, time.time()),
    )
    db.commit()


async def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--preload", action="store_true", help="read key and known_hosts once")
    args = p.parse_args(argv)
    fleet = Fleet.load(args.fleet_dir)
    auth = Auth.of(fleet, args.preload)
    work = args.work_dir or args.out.parent
    db = sqlite3.connect(database(work))
    db.execute(SCHEMA)
    rec = Recorder(args.out)
    try:
        for rnd in range(1 - args.warmup, args.rounds + 1):
            if rnd == 1:
                rec.begin()
            request_id = f"{rnd}:{uuid.uuid4()}"
            t0, submitted = time.perf_counter(), datetime.now(UTC).timestamp()
            await asyncio.gather(
                *(
                    run_host(db, fleet, auth, request_id, submitted, i, args.command)
                    for i in range(len(fleet.hosts))
                )
            )
            rec.round_done(rnd, time.perf_counter() - t0)
    finally:
        rec.close()
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
