"""Peer: a plain asyncssh loop with a semaphore — no Kafka, no database, no result records.

The floor fleetrun's overhead is measured against. Cold (default): every round connects, runs
and closes per host, `--concurrency` at a time, rounds one after another. `--pooled`: one
connection per host opened by the warm-up round and kept; all recorded rounds are submitted at
once and share the one semaphore (as fleetrun overlaps queued requests), so the measured rate
is the best this loop can do on a warm pool. Deadlines as fleetrun's: `--connect-timeout-s` on
connect + login, `--timeout-s` on the command.

    python -m bench.peers.plainloop --fleet-dir DIR --out OUT.jsonl [--pooled] [--rounds N]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence

import asyncssh

from bench.peers.common import Fleet, Recorder, classify, exit_status, parser, since_ms
from stack.simfleet.config import SimHost


class Loop:
    """The loop's state: fleet, options, semaphore, and the kept connections (pooled mode)."""

    def __init__(self, fleet: Fleet, concurrency: int, timeout_s: float, connect_s: float) -> None:
        self.fleet = fleet
        self.sem = asyncio.Semaphore(concurrency)
        self.timeout_s = timeout_s or None
        self.connect_s = connect_s or None
        self.conns: dict[str, asyncssh.SSHClientConnection] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.keys = [asyncssh.read_private_key(str(fleet.client_key))]
        self.known_hosts = asyncssh.read_known_hosts(str(fleet.known_hosts))

    async def connect(self, h: SimHost) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            h.address,
            h.port,
            username=self.fleet.user,
            client_keys=self.keys,
            known_hosts=self.known_hosts,
            connect_timeout=self.connect_s,
            config=[],
            agent_path=None,
        )

    async def pooled(self, h: SimHost) -> asyncssh.SSHClientConnection:
        lock = self.locks.setdefault(h.name, asyncio.Lock())
        async with lock:
            conn = self.conns.get(h.name)
            if conn is None or conn.is_closed():
                conn = self.conns[h.name] = await self.connect(h)
            return conn

    async def one(
        self, rec: Recorder, rnd: int, t0: float, h: SimHost, command: str, pooled: bool
    ) -> None:
        async with self.sem:
            connecting = True
            try:
                conn = await (self.pooled(h) if pooled else self.connect(h))
                connecting = False
                try:
                    async with asyncio.timeout(self.timeout_s):
                        result = await conn.run(command, check=False)
                finally:
                    if not pooled:
                        conn.close()
                status = exit_status(result.exit_status)
            except Exception as exc:
                status = classify(exc, connecting=connecting)
        rec.host(rnd, h.name, status, since_ms(t0))

    async def round(self, rec: Recorder, rnd: int, command: str, pooled: bool) -> None:
        t0 = time.perf_counter()
        await asyncio.gather(
            *(self.one(rec, rnd, t0, h, command, pooled) for h in self.fleet.hosts)
        )
        rec.round_done(rnd, time.perf_counter() - t0)

    async def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        for conn in self.conns.values():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await conn.wait_closed()


async def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--pooled", action="store_true", help="keep connections; overlap rounds")
    args = p.parse_args(argv)
    fleet = Fleet.load(args.fleet_dir)
    loop = Loop(fleet, args.concurrency, args.timeout_s, args.connect_timeout_s)
    rec = Recorder(args.out)
    try:
        for rnd in range(1 - args.warmup, 1):
            await loop.round(rec, rnd, args.command, args.pooled)
        rec.begin()
        if args.pooled:  # every recorded round at once, one semaphore: the warm-pool floor
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    loop.one(rec, rnd, t0, h, args.command, True)
                    for rnd in range(1, args.rounds + 1)
                    for h in fleet.hosts
                )
            )
            rec.round_done(args.rounds, time.perf_counter() - t0)
        else:
            for rnd in range(1, args.rounds + 1):
                await loop.round(rec, rnd, args.command, False)
    finally:
        await loop.close()
        rec.close()
    return 0


if __name__ == "__main__":
    import uvloop

    sys.exit(uvloop.run(main()))
