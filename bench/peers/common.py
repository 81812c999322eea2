"""What every peer shares: its command line, the fleet's hosts, and the JSON-lines it writes.

A peer is a process the harness starts (`python -m bench.peers.NAME ...`) so that its CPU and
memory are its own. It runs `--rounds` rounds of one command on every host of a simulated fleet
(after `--warmup` unrecorded rounds) and writes one JSON line per host result,
`{"r": round, "h": host, "s": status, "ms": latency}`, and one per round,
`{"round": r, "wall_s": s}`, flushed as they happen so a run cut by the harness's cap still
shows what finished; a first `{"mark": {"cpu_s", "rss_mb"}}` line says what the process had
used before the recorded rounds.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncssh
import psutil

from stack.simfleet.config import SimHost
from stack.simfleet.files import StateFiles, parse_hosts

# Statuses follow fleetrun's result statuses so that every tool's failures read the same.
OK, FAILED, TIMEOUT, UNREACHABLE = "ok", "failed", "timeout", "unreachable"
AUTH_FAILED, HOST_KEY_MISMATCH, ERROR = "auth_failed", "host_key_mismatch", "error"


def parser(description: str) -> argparse.ArgumentParser:
    """The command line every peer accepts."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--fleet-dir", type=Path, required=True, help="the simulated fleet's state dir")
    p.add_argument("--out", type=Path, required=True, help="JSON-lines output")
    p.add_argument("--command", default="uname -a")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--warmup", type=int, default=0, help="unrecorded rounds first")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--timeout-s", type=float, default=30.0, help="command deadline (0: none)")
    p.add_argument(
        "--connect-timeout-s", type=float, default=10.0, help="connect deadline (0: none)"
    )
    p.add_argument("--work-dir", type=Path, help="scratch dir (inventories, databases)")
    return p


@dataclass(frozen=True, slots=True)
class Fleet:
    """The simulated fleet a peer runs on: hosts and the client's key and known_hosts."""

    dir: Path
    hosts: list[SimHost]

    @classmethod
    def load(cls, dir: Path) -> Fleet:
        files = StateFiles(dir)
        return cls(dir, parse_hosts(files.hosts.read_text()))

    @property
    def known_hosts(self) -> Path:
        return StateFiles(self.dir).known_hosts

    @property
    def client_key(self) -> Path:
        return StateFiles(self.dir).client_key

    @property
    def user(self) -> str:
        return "sim"


class Recorder:
    """Writes the peer's JSON lines; one line per host result and per finished round.

    Nothing is recorded before `begin()`, which also writes a `mark` line with this process's
    CPU (its own and its reaped children's) and RSS at that moment: the harness subtracts it, so
    warm-up rounds and interpreter start-up do not count.
    """

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("w")
        self.recording = False

    def begin(self) -> None:
        if self.recording:
            return
        own, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        rss = psutil.Process().memory_info().rss / 2**20
        self._write({"mark": {"cpu_s": round(cpu, 3), "rss_mb": round(rss, 1)}})
        self.recording = True

    def _write(self, value: dict[str, object]) -> None:
        self._file.write(json.dumps(value) + "\n")
        self._file.flush()

    def host(self, rnd: int, host: str, status: str, latency_ms: float) -> None:
        if self.recording:
            self._write({"r": rnd, "h": host, "s": status, "ms": round(latency_ms, 2)})

    def round_done(self, rnd: int, wall_s: float) -> None:
        """Every round's wall time, warm-up rounds (numbered <= 0) included."""
        self._write({"round": rnd, "wall_s": round(wall_s, 4)})

    def close(self) -> None:
        self._file.close()


def since_ms(t0: float) -> float:
    """Milliseconds since the perf_counter value t0."""
    return (time.perf_counter() - t0) * 1000


def classify(exc: BaseException, *, connecting: bool) -> str:
    """A result status for an exception raised while connecting or running a command."""
    if isinstance(exc, asyncssh.PermissionDenied):
        return AUTH_FAILED
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HOST_KEY_MISMATCH
    if connecting and isinstance(exc, OSError | TimeoutError | asyncssh.Error):
        return UNREACHABLE
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    return ERROR


def exit_status(code: int | None) -> str:
    """ok for exit 0, failed otherwise (a signal or no status counts as failed)."""
    return OK if code == 0 else FAILED


def round_numbers(warmup: int, rounds: int) -> list[int]:
    """Round numbers in order: warm-up rounds are <= 0, recorded rounds are 1..rounds."""
    return list(range(1 - warmup, 1)) + list(range(1, rounds + 1))


def addresses(hosts: Sequence[SimHost]) -> dict[str, str]:
    """address → host name (peers that talk to addresses report the fleet's names)."""
    return {h.address: h.name for h in hosts}
