"""Peer: ClusterShell's `clush`, which runs the system OpenSSH client once per host.

A generated ssh_config (`-o "-F FILE"`) gives the port, user, key and the fleet's known_hosts
with StrictHostKeyChecking=yes and BatchMode; nodes are the hosts' loopback addresses, in a
`--hostfile`. `-f` is the fan-out, `-t`/`-u` the connect and command timeouts. One `clush` per
round (a fresh ssh process per host: no connection reuse). Per-host latency is when the host's
first output line arrived; a host's status comes from clush's stderr ("exited with exit code
N", "command timeout"), ssh's exit code 255 meaning it could not connect.

    python -m bench.peers.clush --fleet-dir DIR --out OUT.jsonl --work-dir DIR [--rounds N]
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ClusterShell.NodeSet import NodeSet

from bench.peers.common import (
    FAILED,
    OK,
    TIMEOUT,
    UNREACHABLE,
    Fleet,
    Recorder,
    addresses,
    parser,
    round_numbers,
)

EXITED = re.compile(r"^clush: (\S+): exited with exit code (\d+)")
TIMED_OUT = re.compile(r"^clush: (\S+): command timeout")
ROUND_CAP_S = 900.0


def ssh_config(fleet: Fleet, path: Path) -> Path:
    """An ssh_config for every fleet address: port, user, key, known_hosts, strict checking."""
    port = {h.port for h in fleet.hosts}
    if len(port) != 1:
        raise SystemExit("clush peer: the fleet must use one port for every host (spread=address)")
    path.write_text(
        "Host *\n"
        f"  Port {port.pop()}\n"
        f"  User {fleet.user}\n"
        f"  IdentityFile {fleet.client_key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {fleet.known_hosts}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
    )
    return path


def stderr_statuses(text: str) -> dict[str, str]:
    """address → status for the hosts clush reported on stderr (non-zero exits, timeouts).

    clush folds hosts that ended alike (`127.2.0.[2-3]: command timeout`); a host that accepts
    TCP but never answers ends by the command timeout too (-t only bounds the TCP connect).
    """
    found: dict[str, str] = {}
    for line in text.splitlines():
        if m := EXITED.match(line):
            status = UNREACHABLE if m.group(2) == "255" else FAILED
        elif m := TIMED_OUT.match(line):
            status = TIMEOUT
        else:
            continue
        for node in NodeSet(m.group(1)):
            found[str(node)] = status
    return found


def run_round(argv: list[str], rec: Recorder, rnd: int, names: dict[str, str]) -> None:
    t0 = time.perf_counter()
    first: dict[str, float] = {}
    err_chunks: list[bytes] = []
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        errs = proc.stderr
        reader = threading.Thread(target=lambda: err_chunks.append(errs.read()), daemon=True)
        reader.start()
        for line in proc.stdout:
            head, sep, _ = line.partition(b": ")
            if sep:
                first.setdefault(head.decode(errors="replace"), time.perf_counter())
        proc.wait(timeout=ROUND_CAP_S)
        reader.join(timeout=10)
    end = time.perf_counter()
    reported = stderr_statuses(b"".join(err_chunks).decode(errors="replace"))
    for address, name in names.items():
        status = reported.get(address, OK if address in first else FAILED)
        at = first.get(address, end)
        rec.host(rnd, name, status, (at - t0) * 1000)
    rec.round_done(rnd, end - t0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    fleet = Fleet.load(args.fleet_dir)
    work: Path = args.work_dir or args.out.parent
    config = ssh_config(fleet, work / "ssh_config")
    hostfile = work / "hosts"
    hostfile.write_text("".join(f"{h.address}\n" for h in fleet.hosts))
    clush = str(Path(sys.executable).with_name("clush"))
    cmd = [clush, "-o", f"-F {config}", "-f", str(args.concurrency), "--hostfile", str(hostfile)]
    if args.connect_timeout_s:
        cmd += ["-t", str(args.connect_timeout_s)]
    if args.timeout_s:
        cmd += ["-u", str(args.timeout_s)]
    cmd.append(args.command)
    rec = Recorder(args.out)
    try:
        for rnd in round_numbers(args.warmup, args.rounds):
            if rnd == 1:
                rec.begin()
            run_round(cmd, rec, rnd, addresses(fleet.hosts))
    finally:
        rec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
