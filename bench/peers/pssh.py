"""Peer: parallel-ssh's `ParallelSSHClient` (ssh2-python / libssh2, gevent).

One client for every round, as a script would keep it: it keeps its per-host SSH sessions, so
rounds after the first reuse connections (its own pool). `pool_size` is the concurrency,
`timeout` the per-operation deadline (connect, auth and reads), one connection attempt per host
(`num_retries=1`: the harness's dead hosts must not be retried for minutes).

Host keys: parallel-ssh 2.16's native client has no known_hosts check at all — it accepts any
host key (nothing in its API turns verification on). It runs here as it ships, and the report
says so. Per-host latency: each host's output is read in its own greenlet, and the result's
time is when its channel closed and the exit status was known.

    python -m bench.peers.pssh --fleet-dir DIR --out OUT.jsonl [--rounds N]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import gevent
from pssh.clients import ParallelSSHClient

from bench.peers.common import (
    ERROR,
    TIMEOUT,
    UNREACHABLE,
    Fleet,
    Recorder,
    addresses,
    exit_status,
    parser,
    round_numbers,
    since_ms,
)


def _status_of(exc: BaseException) -> str:
    name = type(exc).__name__
    if "Timeout" in name:
        return TIMEOUT
    if name in {"ConnectionError", "UnknownHostError", "SessionError", "ConnectionRefusedError"}:
        return UNREACHABLE
    if name == "AuthenticationError":
        return "auth_failed"
    return ERROR


def _drain(out: Any, client: ParallelSSHClient, names: dict[str, str]) -> tuple[str, str]:
    """Read one host's output to the end; (host name, status)."""
    name = names.get(out.host, out.host)
    if out.exception is not None:
        return name, _status_of(out.exception)
    try:
        for _line in out.stdout:
            pass
        for _line in out.stderr:
            pass
        out.client.wait_finished(out)
    except Exception as exc:
        return name, _status_of(exc)
    return name, exit_status(out.exit_code)


def run_round(
    client: ParallelSSHClient, rec: Recorder, rnd: int, command: str, names: dict[str, str]
) -> None:
    t0 = time.perf_counter()
    outputs = client.run_command(command, stop_on_errors=False)

    def one(out: Any) -> None:
        name, status = _drain(out, client, names)
        rec.host(rnd, name, status, since_ms(t0))

    gevent.joinall([gevent.spawn(one, o) for o in outputs], raise_error=False)
    rec.round_done(rnd, time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    fleet = Fleet.load(args.fleet_dir)
    ports = {h.port for h in fleet.hosts}
    if len(ports) != 1:
        raise SystemExit("pssh peer: the fleet must use one port for every host (spread=address)")
    client = ParallelSSHClient(
        [h.address for h in fleet.hosts],
        user=fleet.user,
        port=ports.pop(),
        pkey=str(fleet.client_key),
        pool_size=args.concurrency,
        timeout=args.timeout_s or None,
        num_retries=1,
        allow_agent=False,
        identity_auth=False,
    )
    rec = Recorder(args.out)
    names = addresses(fleet.hosts)
    try:
        for rnd in round_numbers(args.warmup, args.rounds):
            if rnd == 1:
                rec.begin()
            run_round(client, rec, rnd, args.command, names)
    finally:
        rec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
