"""CPU seconds and peak RSS of the processes a benchmark run involves, and capped subprocesses.

`Sampler` reads RSS every `interval_s` in a background thread (psutil) and CPU from cpu_times
deltas; a watched tree sums RSS over the process and its live descendants (shared pages are
counted once per process, as `ps` does). `run_capped` runs a peer as its own process group under
a wall-clock cap and takes its CPU from wait4's rusage, which includes every descendant it
waited for (ansible's forks, the ssh clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

MB = 1024 * 1024
SAMPLE_S = 0.05
TREE_SAMPLE_S = 0.1  # walking a tree of ~100 processes costs more; sample it less often
KILL_GRACE_S = 5.0


def cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of `proc` (and of the children it has waited for)."""
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _members(proc: psutil.Process, tree: bool) -> list[psutil.Process]:
    if not tree:
        return [proc]
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


@dataclass
class _Watched:
    """One watched process (or tree): per-pid CPU baselines, so live children count too."""

    proc: psutil.Process
    tree: bool
    since: float
    base: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    rss0: int = 0
    peak: int = 0
    alive: bool = True

    def sample(self, *, first: bool = False) -> None:
        rss = 0
        for member in _members(self.proc, self.tree):
            try:
                with member.oneshot():
                    cpu = cpu_s(member)
                    rss += member.memory_info().rss
                    if member.pid not in self.base:
                        born_inside = not first and member.create_time() >= self.since
                        self.base[member.pid] = 0.0 if born_inside else cpu
            except psutil.Error:
                if member.pid == self.proc.pid:
                    self.alive = False
                continue
            self.last[member.pid] = cpu
        if first:
            self.rss0 = rss
        self.peak = max(self.peak, rss)

    @property
    def cpu(self) -> float:
        return sum(self.last[pid] - self.base[pid] for pid in self.last)


@dataclass
class Sampler:
    """Samples the peak RSS and CPU of named processes while a run is under way."""

    interval_s: float = SAMPLE_S
    _watched: dict[str, _Watched] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, name: str, pid: int, *, tree: bool = False) -> None:
        """Start following process `pid` (and its descendants if `tree`) under `name`."""
        with contextlib.suppress(psutil.Error):
            w = _Watched(psutil.Process(pid), tree, time.time())
            w.sample(first=True)
            with self._lock:
                self._watched[name] = w

    def _sample(self) -> None:
        with self._lock:
            items = list(self._watched.values())
        for w in items:
            if w.alive:
                w.sample()

    def _run(self) -> None:
        interval = self.interval_s
        if any(w.tree for w in self._watched.values()):
            interval = max(interval, TREE_SAMPLE_S)
        while not self._stop.wait(interval):
            self._sample()

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()

    def usage(self) -> dict[str, dict[str, float]]:
        """Per name: cpu_s, peak_rss_mb, start_rss_mb and rss_growth_mb (peak - start)."""
        return {
            name: {
                "cpu_s": round(w.cpu, 3),
                "peak_rss_mb": round(w.peak / MB, 1),
                "start_rss_mb": round(w.rss0 / MB, 1),
                "rss_growth_mb": round((w.peak - w.rss0) / MB, 1),
            }
            for name, w in self._watched.items()
        }


@dataclass(frozen=True, slots=True)
class Capped:
    """How a capped subprocess ended, and what it cost."""

    returncode: int
    timed_out: bool
    wall_s: float
    cpu_s: float  # the process and every descendant it reaped (wait4 rusage)
    peak_rss_mb: float  # sampled sum over the live process tree
    max_single_rss_mb: float  # largest single process among it and reaped descendants


def run_capped(
    argv: Sequence[str],
    *,
    cap_s: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
    extra: Mapping[str, int] | None = None,
) -> tuple[Capped, dict[str, dict[str, float]]]:
    """Run argv in its own process group; SIGTERM then SIGKILL the group past `cap_s`.

    Returns the outcome and the sampled usage of the process tree (`peer`) and of the `extra`
    processes watched alongside (e.g. the simulated fleet).
    """
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    err = stderr.open("wb") if stderr else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(KILL_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(cap_s, kill)
        timer.daemon = True
        sampler = Sampler()
        sampler.watch("peer", proc.pid, tree=True)
        for name, pid in (extra or {}).items():
            sampler.watch(name, pid)
        with sampler:
            timer.start()
            _, status, rusage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        # Stragglers of the group (a killed tree): gone before the next run starts.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        for f in (out, err):
            if not isinstance(f, int):
                f.close()
    usage = sampler.usage()
    capped = Capped(
        returncode=proc.returncode,
        timed_out=timed_out.is_set(),
        wall_s=round(wall, 3),
        cpu_s=round(rusage.ru_utime + rusage.ru_stime, 3),
        peak_rss_mb=usage["peer"]["peak_rss_mb"],
        max_single_rss_mb=round(rusage.ru_maxrss / 1024, 1),
    )
    return capped, usage


def box_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (every process, ours and others')."""
    t = psutil.cpu_times()
    return float(t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0))


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


RESULTS_DIR = Path(__file__).parent / "results"


def write_json(name: str, day: str, doc: Mapping[str, Any], *, indent: int = 2) -> Path:
    """Write bench/results/<day>-<name>.json; return its path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{day}-{name}.json"
    path.write_text(json.dumps(doc, indent=indent) + "\n")
    return path


def write_results(name: str, day: str, report: Mapping[str, Any], markdown: str) -> Path:
    """Write bench/results/<day>-<name>.json and .md; return the stem."""
    write_json(name, day, report)
    stem = RESULTS_DIR / f"{day}-{name}"
    stem.with_suffix(".md").write_text(markdown)
    return stem


async def _get(port: int, path: str) -> bytes | None:
    """The body of a 200 answer to GET `path` on a service's ops port, else None."""
    try:
        async with asyncio.timeout(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
    except (OSError, TimeoutError):
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        return None
    return body


async def samples(port: int, *names: str) -> dict[str, float]:
    """The values of the Prometheus samples `names` (without labels) a service exports now."""
    body = await _get(port, "/metrics")
    found: dict[str, float] = {}
    for line in (body or b"").decode().splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            found[name] = float(value)
    return found


async def health(port: int) -> dict[str, Any] | None:
    """A service's /healthz document when it answers 200, else None (not up yet, or failing)."""
    body = await _get(port, "/healthz")
    if body is None:
        return None
    with contextlib.suppress(ValueError):
        value = json.loads(body)
        if isinstance(value, dict):
            return value
    return None


def assigned(doc: Mapping[str, Any] | None) -> bool:
    """A /healthz document (see `health`) of a service holding Kafka partitions.

    fleetrun.ops serves a flat `{"ok": ..., **details}`: the collector lists its partitions,
    the sink counts them; either is falsy when it holds none (it would never see a record).
    """
    return doc is not None and bool(doc.get("assigned_partitions"))
