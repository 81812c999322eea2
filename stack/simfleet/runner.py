"""Start a simulated fleet as a subprocess for tests and benchmarks, and stop it by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.proc import stop_process
from stack.simfleet.config import (
    DEFAULT_BASE_ADDRESS,
    DEFAULT_HUGE_BYTES,
    DEFAULT_PORT,
    Behaviour,
    SimHost,
    Spread,
)
from stack.simfleet.files import StateFiles, parse_hosts, read_json

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.02


class SimFleetError(RuntimeError):
    """The fleet subprocess did not start, answer or stop in time; says where to look."""


@dataclass(frozen=True)
class RunningFleet:
    """A fleet started by `running_fleet`: its files, hosts and a way to read its counters."""

    dir: Path
    pid: int
    hosts: list[SimHost]
    max_connections: int
    start_s: float

    @property
    def files(self) -> StateFiles:
        return StateFiles(self.dir)

    @property
    def known_hosts(self) -> Path:
        return self.files.known_hosts

    @property
    def client_key(self) -> Path:
        return self.files.client_key

    @property
    def inventory(self) -> Path:
        return self.files.inventory

    @property
    def log(self) -> Path:
        return self.files.log

    def by_behaviour(self, behaviour: Behaviour | str) -> list[SimHost]:
        """Hosts with this behaviour, in name order."""
        return [h for h in self.hosts if h.behaviour == behaviour]

    def host(self, behaviour: Behaviour | str) -> SimHost:
        """The first host with this behaviour; raises LookupError if the profile gave none."""
        for h in self.hosts:
            if h.behaviour == behaviour:
                return h
        raise LookupError(f"no host with behaviour {behaviour!r} in this fleet")

    async def stats(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Fresh counters: signal SIGUSR1, then wait for a newer stats.json."""
        path = self.files.stats
        before = (read_json(path) or {}).get("seq", 0)
        os.kill(self.pid, signal.SIGUSR1)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    current = read_json(path)
                    if current is not None and current.get("seq", 0) > before:
                        return current
                    await asyncio.sleep(POLL_S)
        except TimeoutError:
            raise SimFleetError(f"no fresh {path} within {timeout_s}s; see {self.log}") from None

    async def wait_stats(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0
    ) -> dict[str, Any]:
        """Poll the counters until `predicate` holds; raises SimFleetError with the last seen."""
        last: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    last = await self.stats(timeout_s)
                    if predicate(last):
                        return last
                    await asyncio.sleep(POLL_S * 5)
        except TimeoutError:
            counters = last.get("counters")
            raise SimFleetError(
                f"stats condition not met within {timeout_s}s; last counters: {counters}"
            ) from None


def fleet_argv(
    n: int,
    dir: Path,
    profile: str,
    seed: int,
    *,
    base_address: str,
    port: int,
    spread: Spread | str,
    slow_s: float,
    handshake_delay_s: float,
    huge_bytes: int,
    max_connections: int | None,
) -> list[str]:
    """The command line that starts a fleet with these settings."""
    argv = [
        sys.executable,
        "-m",
        "stack.simfleet",
        *("--hosts", str(n), "--dir", str(dir), "--profile", profile, "--seed", str(seed)),
        *("--base-address", base_address, "--port", str(port), "--spread", str(spread)),
        *("--slow-s", str(slow_s), "--handshake-delay-s", str(handshake_delay_s)),
        *("--huge-bytes", str(huge_bytes), "--quiet", "--exit-with-parent"),
    ]
    if max_connections is not None:
        argv += ["--max-connections", str(max_connections)]
    return argv


@contextlib.asynccontextmanager
async def running_fleet(
    n: int,
    dir: Path | str,
    profile: str = "ok=1",
    seed: int = 1,
    *,
    base_address: str = DEFAULT_BASE_ADDRESS,
    port: int = DEFAULT_PORT,
    spread: Spread | str = Spread.ADDRESS,
    slow_s: float = 3.0,
    handshake_delay_s: float = 5.0,
    huge_bytes: int = DEFAULT_HUGE_BYTES,
    max_connections: int | None = None,
    ready_timeout_s: float | None = None,
    stop_timeout_s: float = 10.0,
) -> AsyncIterator[RunningFleet]:
    """Run `python -m stack.simfleet` as a subprocess until the block exits.

    Waits for the `ready` file (default deadline 30 s + 5 ms per host); stops with SIGTERM,
    then SIGKILL after `stop_timeout_s`.
    """
    files = _prepare_dir(Path(dir))
    argv = fleet_argv(
        n,
        files.dir,
        profile,
        seed,
        base_address=base_address,
        port=port,
        spread=spread,
        slow_s=slow_s,
        handshake_delay_s=handshake_delay_s,
        huge_bytes=huge_bytes,
        max_connections=max_connections,
    )
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    with files.output.open("wb") as output:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env={**os.environ, "PYTHONPATH": pythonpath},
        )
    try:
        ready = await _wait_ready(proc, files, ready_timeout_s or 30.0 + n * 0.005)
        yield RunningFleet(
            dir=files.dir,
            pid=proc.pid,
            hosts=parse_hosts(files.hosts.read_text()),
            max_connections=int(ready["max_connections"]),
            start_s=float(ready["start_s"]),
        )
    finally:
        await stop_process(proc, stop_timeout_s)


def _prepare_dir(dir: Path) -> StateFiles:
    files = StateFiles(dir.resolve())
    files.dir.mkdir(parents=True, exist_ok=True)
    files.ready.unlink(missing_ok=True)  # a stale `ready` must not pass for this start
    return files


async def _wait_ready(
    proc: asyncio.subprocess.Process, files: StateFiles, timeout_s: float
) -> dict[str, Any]:
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                if proc.returncode is not None:
                    raise SimFleetError(
                        f"simfleet exited with status {proc.returncode} before it was ready: "
                        f"{_tail(files.output)} (see {files.output} and {files.log})"
                    )
                ready = read_json(files.ready)
                if ready is not None and ready.get("pid") == proc.pid:
                    return ready
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise SimFleetError(
            f"simfleet (pid {proc.pid}) not ready within {timeout_s:.0f}s; see {files.log}"
        ) from None


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip() or "(no output)"
    except OSError:
        return "(no output file)"
