"""The scenarios `python -m bench.run` measures, and which tools run in each — pure data.

Sizes are chosen so that `make bench` (quick) finishes in about ten minutes on the 2-core box
with the stack, the fleet and every tool sharing it; `--full` (`make bench-full`) adds 5,000
hosts, more rounds for the slow peers and the 1,000,000-row sink backlog. Every run has a
wall-clock cap; a run that reaches it is recorded as "timeout" with what it finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

GIB = 1024**3
# Tool names: fleetrun end to end, and the peers in bench/peers.
FLEETRUN, LOOP, SEED, SEED_PRELOAD = "fleetrun", "plainloop", "seed", "seed-preload"
PSSH, ANSIBLE, CLUSH = "pssh", "ansible", "clush"
ALL_TOOLS = (FLEETRUN, LOOP, SEED, SEED_PRELOAD, PSSH, ANSIBLE, CLUSH)
ANSIBLE_FORKS = 50


# Scenarios where fleetrun also runs with the execution ledger off (tool `fleetrun@noledger`),
# in the same run: the ledger must cost at most 10% there (issue 13).
LEDGER_COST_SCENARIOS: Final = ("fanout-1000", "warm-500x50")
LEDGER_COST_RATIO: Final = 0.9
# And with live output's code path off (`fleetrun@nolive`): streaming off must cost ≤ 3% (issue 15).
LIVE_COST_SCENARIOS: Final = ("warm-500x50",)
LIVE_COST_RATIO: Final = 0.97
# And with every request signed and verified (`fleetrun@signed`: an allowed-signers file and
# signatures required) against unsigned requests: signing must cost ≤ 5% (issue 14).
SIGNED_COST_SCENARIOS: Final = ("warm-500x50",)
SIGNED_COST_RATIO: Final = 0.95


@dataclass(frozen=True, slots=True)
class Run:
    """One tool in a scenario, with what differs from the scenario's defaults."""

    tool: str
    rounds: int | None = None  # None: the scenario's rounds (slow peers run fewer)
    concurrency: int | None = None
    cap_s: float | None = None
    warmup: int | None = None  # None: the scenario's warm-up rounds


@dataclass(frozen=True, slots=True)
class Scenario:
    """A fleet, a command, how many rounds, the deadlines, and the tools that run on it."""

    name: str
    title: str
    hosts: int
    runs: tuple[Run, ...]
    profile: str = "ok=1"
    command: str = "uname -a"
    rounds: int = 1
    warmup: int = 0  # unrecorded rounds first (the warm-pool scenario)
    concurrency: int = 100
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    cap_s: float = 180.0
    pooled_loop: bool = False  # plainloop keeps connections and overlaps rounds
    reference_profile: str | None = None  # a healthy fleet measured first (hang scenario)
    reference_tools: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def rounds_of(self, run: Run) -> int:
        return run.rounds if run.rounds is not None else self.rounds

    def warmup_of(self, run: Run) -> int:
        return run.warmup if run.warmup is not None else self.warmup

    def concurrency_of(self, run: Run) -> int:
        if run.tool == ANSIBLE:
            return ANSIBLE_FORKS
        return run.concurrency if run.concurrency is not None else self.concurrency

    def cap_of(self, run: Run) -> float:
        return run.cap_s if run.cap_s is not None else self.cap_s


def _fanout(hosts: int, *, ansible_cap_s: float, seed_cap_s: float, cap_s: float) -> Scenario:
    return Scenario(
        name=f"fanout-{hosts}",
        title=f"one request, `uname -a` on {hosts:,} hosts (cold: no connection yet)",
        hosts=hosts,
        cap_s=cap_s,
        runs=(
            Run(FLEETRUN),
            Run(LOOP),
            Run(SEED, cap_s=seed_cap_s),
            Run(SEED_PRELOAD, cap_s=seed_cap_s),
            Run(PSSH),
            Run(ANSIBLE, cap_s=ansible_cap_s),
            Run(CLUSH),
        ),
    )


def _warm(full: bool) -> Scenario:
    return Scenario(
        name="warm-500x50",
        title="50 requests to the same 500 hosts after a warm-up request (connection reuse)",
        hosts=500,
        rounds=50,
        warmup=1,
        pooled_loop=True,
        cap_s=240.0,
        runs=(
            Run(FLEETRUN),
            Run(LOOP),
            Run(PSSH),
            Run(SEED, rounds=50 if full else 3),
            Run(SEED_PRELOAD, rounds=50 if full else 3),
            Run(CLUSH, rounds=10 if full else 2),
            Run(ANSIBLE, rounds=5 if full else 1, cap_s=400.0),
        ),
        notes=(
            "fleetrun gets the 50 requests back to back (the collector overlaps up to "
            "max_inflight_requests=16); the plain loop likewise submits all 50 rounds at once "
            "through one Semaphore(100) on kept connections — its best case. pssh, the seed, "
            "clush and ansible run one request after another, as they are used; the slow "
            "ones run fewer rounds (rates are per recorded round; see `rounds`).",
        ),
    )


def _hang(hosts: int, full: bool) -> Scenario:
    return Scenario(
        name=f"hang-{hosts}",
        title=f"{hosts:,} hosts, 5% dead (TCP accepted, no banner) or hanging; timeout_s=5",
        hosts=hosts,
        profile="dead=0.025,hang=0.025",
        timeout_s=5.0,
        connect_timeout_s=5.0,
        concurrency=hosts,
        warmup=1,
        pooled_loop=True,
        cap_s=120.0,
        reference_profile="ok=1",
        reference_tools=(FLEETRUN, LOOP),
        runs=(
            Run(FLEETRUN),
            Run(LOOP),
            Run(PSSH, warmup=0, cap_s=120.0 if full else 30.0),
            Run(CLUSH, concurrency=100, warmup=0),
            Run(SEED, warmup=0, cap_s=180.0 if full else 30.0),
            *((Run(ANSIBLE, warmup=0, cap_s=240.0),) if full else ()),
        ),
        notes=(
            "Every host starts at once (request concurrency = hosts), so each dead or hanging "
            "host costs one deadline, concurrently; connect_timeout_s=5 as well. fleetrun and "
            "the loop run a first request (its wall is shown as `1st`: cold, every connection "
            "new) and then the measured one on their warm pools; the `@healthy` rows ran first "
            "on a fleet without bad hosts, same settings: the reference for the target total ≤ "
            "timeout + 20% of the healthy run. clush runs with -f 100 -t 5 -u 5 (a thousand "
            "ssh processes at once would not fit the box); pssh and the seed run cold only "
            "and are stopped at their caps when they do not finish.",
        ),
    )


def _huge() -> Scenario:
    return Scenario(
        name="huge-1gib",
        title="one host prints 1 GiB (`sim:bytes 1073741824`): memory of each tool",
        hosts=1,
        command=f"sim:bytes {GIB}",
        warmup=0,
        timeout_s=45.0,
        cap_s=60.0,
        runs=(Run(FLEETRUN), Run(LOOP), Run(PSSH), Run(CLUSH), Run(SEED)),
        notes=(
            "fleetrun keeps the head and tail (64 KiB) and hashes the whole stream; its RSS "
            "growth is the collector's peak minus its RSS when the request was produced "
            "(collector and sink already running). timeout_s=45 for every tool. The peers "
            "keep what they read as written: asyncssh's run() collects the whole output; pssh "
            "and clush stream lines (the peer reads and drops them). "
            "ansible is left out: it keeps the whole output in its result (several copies, "
            "several GiB on a shared 24 GiB box).",
        ),
    )


def scenarios(full: bool) -> list[Scenario]:
    """The scenarios in the order they run."""
    found = [
        _fanout(100, ansible_cap_s=120.0, seed_cap_s=120.0, cap_s=120.0),
        _fanout(1000, ansible_cap_s=240.0, seed_cap_s=180.0, cap_s=180.0),
    ]
    if full:
        found.append(_fanout(5000, ansible_cap_s=600.0, seed_cap_s=300.0, cap_s=300.0))
    found += [_warm(full), _hang(1000, full), _huge()]
    return found


# Micro-benchmarks written by others, run as they are; their JSON/markdown is linked/included.
SINK_ROWS_QUICK, SINK_ROWS_FULL = 200_000, 1_000_000


SHARDS_FULL_ARGS = ("--hosts", "20000", "--big", "5000")
SHARDS_QUICK_ARGS = ("--hosts", "5000", "--big", "1250", "--shard-size", "500")


def micro_benchmarks(full: bool) -> list[tuple[str, list[str], float]]:
    """(name, argv after `python -m`, cap in seconds) of the other benchmarks bench.run drives."""
    rows = SINK_ROWS_FULL if full else SINK_ROWS_QUICK
    return [
        ("sink", ["bench.bench_sink", "--rows", str(rows), "--naive-rows", "5000"], 600.0),
        ("codec", ["bench.bench_codec"], 120.0),
        ("collector", ["bench.bench_collector", "--rounds", "3"], 300.0),
        # Issue 16's figures (20,000 hosts; 5,000 beside the small ones) with --full; a quarter
        # of them in the quick run.
        ("shards", ["bench.bench_shards", *SHARDS_FULL_ARGS], 3000.0)
        if full
        else ("shards", ["bench.bench_shards", *SHARDS_QUICK_ARGS], 900.0),
        ("admission", ["bench.bench_admission"], 120.0),
    ]
