"""`make faults` works: the fault suite's harness, run as a user runs it, with one trial of one
fault on 20 simulated hosts plus the stack's sshd hosts.

Run as a process (tests and benchmarks do not import each other); it writes its JSON and
FAULTS.md into the test's directory, not the repository's. The broker test kills the stack's
Kafka broker with SIGKILL (its pid file) and starts it again, as test_sink_faults.py stops the
stack's PostgreSQL: the integration tier's other tests see the broker back before they run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from stack.env import StackEnv

ROOT = Path(__file__).resolve().parents[2]
HOSTS = 20
DEADLINE_S = 150.0


async def _suite(tmp_path: Path, fault: str) -> tuple[dict[str, Any], str, str]:
    """Run `python -m bench.faults --only fault --trials 1`; its row, log and FAULTS.md."""
    out = tmp_path / "out"
    log = tmp_path / "faults.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.faults",
            *("--only", fault, "--trials", "1", "--hosts", str(HOSTS), "--seed", "7"),
            *("--base-address", "127.43.0.1", "--out-dir", str(out)),
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
    assert "seed 7" in text
    (report,) = out.glob("*-faults.json")
    (row,) = json.loads(report.read_text())["faults"]
    return row, text, (out / "FAULTS.md").read_text()


def _counted_and_clean(row: dict[str, Any], stack_env: StackEnv) -> None:
    assert row["ok"] is True, row
    assert row["trials"] == 1
    assert (row["lost"], row["doubled"], row["run_twice"], row["orphans"]) == (0, 0, 0, 0)
    assert row["status_anomalies"] == 0
    # It counted something real: every host reported exactly once and ran at most once.
    hosts = HOSTS + len(stack_env.ssh_hosts)
    assert row["results"] == hosts + 1  # + the probe that measures the recovery
    assert 0 < row["executions"] <= hosts + 1
    assert all(row["checks"].values()), row["checks"]
    assert row["recovery_s_max"] is not None


async def test_the_fault_suite_counts_a_collector_sigkill(
    stack_env: StackEnv, tmp_path: Path
) -> None:
    row, _, report = await _suite(tmp_path, "collector-sigkill")
    assert row["name"] == "collector-sigkill"
    _counted_and_clean(row, stack_env)
    assert "| collector SIGKILL mid-request, restarted | 1 | 0 | 0 | 0 |" in report


async def test_the_fault_suite_counts_a_broker_kill_9(stack_env: StackEnv, tmp_path: Path) -> None:
    row, _, report = await _suite(tmp_path, "kafka-kill9")
    assert row["name"] == "kafka-kill9"
    _counted_and_clean(row, stack_env)
    assert "broker back after" in row["trial_notes"][0]
    assert "| Kafka broker kill -9, restarted | 1 | 0 | 0 | 0 |" in report
