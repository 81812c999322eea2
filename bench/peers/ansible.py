"""Peer: ansible-core ad-hoc, `ansible all -i INVENTORY -m raw -a COMMAND -f FORKS`, one per round.

The inventory gives each host ansible_host/ansible_port/ansible_user/ansible_ssh_private_key_file
and `ansible_ssh_common_args` pointing the system OpenSSH client at the fleet's known_hosts with
StrictHostKeyChecking=yes (and ANSIBLE_HOST_KEY_CHECKING=True). Ansible's own defaults stay:
ControlMaster=auto, ControlPersist=60s (its connection reuse between rounds), -C compression.

Why `raw` and not `command`: `-m command` copies a Python module to the host and runs it with
the host's python; a simulated host has a tiny shell, no Python. `raw` runs the command line
over SSH as every other tool here does (on real hosts `command` costs more: a module transfer
and a Python start per host). Why ANSIBLE_SSH_USETTY=False: ansible asks for a pty (`-tt`)
for raw, which the simulated hosts refuse.

Per-host latency is when ansible printed the host's result line (its display flushes each).
The control-master processes ansible leaves behind (ControlPersist) live in this run's control
path dir; at exit their CPU is added to the report's line and they are stopped by pid.

    python -m bench.peers.ansible --fleet-dir DIR --out OUT.jsonl --work-dir DIR [--rounds N]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from bench.peers.common import (
    ERROR,
    FAILED,
    OK,
    TIMEOUT,
    UNREACHABLE,
    Fleet,
    Recorder,
    parser,
    round_numbers,
    since_ms,
)

LINE = re.compile(r"^(\S+) \| (CHANGED|SUCCESS|FAILED|UNREACHABLE!)(?: \| rc=(-?\d+))?")
ROUND_CAP_S = 900.0


def inventory(fleet: Fleet, path: Path) -> Path:
    """Write an INI inventory for the fleet; returns its path."""
    common = (
        f"-o UserKnownHostsFile={fleet.known_hosts} -o GlobalKnownHostsFile=/dev/null "
        "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
    )
    lines = ["[sim]"]
    lines += [f"{h.name} ansible_host={h.address} ansible_port={h.port}" for h in fleet.hosts]
    lines += [
        "",
        "[sim:vars]",
        f"ansible_user={fleet.user}",
        f"ansible_ssh_private_key_file={fleet.client_key}",
        f"ansible_ssh_common_args='{common}'",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def status_of(word: str, rc: str | None, text: str) -> str:
    """A result status from ansible's result line (and its message, for unreachable hosts)."""
    if word in ("CHANGED", "SUCCESS"):
        return OK if rc in (None, "0") else FAILED
    if word == "UNREACHABLE!":
        return TIMEOUT if "timed out" in text.lower() else UNREACHABLE
    return FAILED if rc is not None else ERROR


def run_round(argv: list[str], env: dict[str, str], rec: Recorder, rnd: int) -> int:
    t0 = time.perf_counter()
    seen = 0
    with subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = LINE.match(line)
            if m is not None:
                seen += 1
                rec.host(rnd, m.group(1), status_of(m.group(2), m.group(3), line), since_ms(t0))
        proc.wait(timeout=ROUND_CAP_S)
    rec.round_done(rnd, time.perf_counter() - t0)
    return seen


def control_masters(cp_dir: Path) -> list[psutil.Process]:
    """The ssh ControlPersist masters this run left (their command line names cp_dir)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if cmd.startswith("ssh: ") and str(cp_dir) in cmd:
            found.append(proc)
    return found


def stop_masters(cp_dir: Path) -> float:
    """Stop the control masters by pid; the CPU seconds they had used."""
    used = 0.0
    for proc in control_masters(cp_dir):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            used += t.user + t.system
            proc.terminate()
    return used


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--forks", type=int, default=50)
    args = p.parse_args(argv)
    fleet = Fleet.load(args.fleet_dir)
    work: Path = args.work_dir or args.out.parent
    cp_dir = work / "cp"
    cp_dir.mkdir(parents=True, exist_ok=True)
    inv = inventory(fleet, work / "inventory.ini")
    env = dict(os.environ) | {
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_USETTY": "False",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        "ANSIBLE_HOME": str(work / "home"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }
    if args.connect_timeout_s:
        env["ANSIBLE_TIMEOUT"] = str(int(max(1, args.connect_timeout_s)))
    if args.timeout_s:
        env["ANSIBLE_TASK_TIMEOUT"] = str(int(max(1, args.timeout_s)))
    ansible = str(Path(sys.executable).with_name("ansible"))
    cmd = [ansible, "all", "-i", str(inv), "-m", "raw", "-a", args.command]
    cmd += ["-f", str(args.forks)]
    rec = Recorder(args.out)
    masters_cpu = 0.0
    try:
        for rnd in round_numbers(args.warmup, args.rounds):
            if rnd == 1:
                rec.begin()
            run_round(cmd, env, rec, rnd)
    finally:
        masters_cpu = stop_masters(cp_dir)
        rec.close()
    (work / "extra.json").write_text(json.dumps({"extra_cpu_s": round(masters_cpu, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
