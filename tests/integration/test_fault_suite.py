"""`make faults` works: the fault suite's harness, run as a user runs it, with one trial of one
fault (a collector SIGKILLed mid-request) on 20 simulated hosts plus the stack's sshd hosts.

Run as a process (tests and benchmarks do not import each other); it writes its JSON and
FAULTS.md into the test's directory, not the repository's.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from stack.env import StackEnv

ROOT = Path(__file__).resolve().parents[2]
HOSTS = 20
DEADLINE_S = 150.0


async def test_the_fault_suite_counts_one_sigkill_trial(
    stack_env: StackEnv, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    log = tmp_path / "faults.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.faults",
            *("--only", "collector-sigkill", "--trials", "1", "--hosts", str(HOSTS)),
            *("--seed", "7", "--base-address", "127.43.0.1", "--out-dir", str(out)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            cwd=ROOT,
        )
        try:
            async with asyncio.timeout(DEADLINE_S):
                status = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = log.read_text(errors="replace")
    assert status == 0, text[-3000:]
    (report,) = out.glob("*-faults.json")
    doc = json.loads(report.read_text())
    (row,) = doc["faults"]
    assert row["name"] == "collector-sigkill"
    assert row["ok"] is True, row
    assert row["trials"] == 1
    assert (row["lost"], row["doubled"], row["run_twice"], row["orphans"]) == (0, 0, 0, 0)
    # It counted something real: every host ran at most once and reported exactly once.
    hosts = HOSTS + len(stack_env.ssh_hosts)
    assert row["results"] == hosts + 1  # + the probe that measures the recovery
    assert 0 < row["executions"] <= hosts + 1
    assert all(row["checks"].values()), row["checks"]
    assert row["recovery_s_max"] is not None
    assert "seed 7" in text
    assert (
        "| collector SIGKILL mid-request, restarted | 1 | 0 | 0 | 0 |"
        in (out / "FAULTS.md").read_text()
    )
