"""An address that never answers: SYNs arrive and no reply ever comes back (root only).

    with blackhole_namespace() as bh:
        connect to bh.address ... -> hangs until the client's own connect timeout

A network namespace `fleetrun-bh-<pid>-<n>` gets one end of a veth pair; the other end stays in
the root namespace. Each side has an address in a /30 chosen from 10.203.0.0/16 (one not in use
on this machine, allocated under a lock, so parallel test runs do not collide). Inside the
namespace a blackhole route for the host side's address swallows every reply (SYN-ACK or RST),
so a TCP connect to the namespace address neither succeeds nor fails: exactly a host that is
gone, or a firewall that drops. Created and destroyed idempotently; removed even when the test
fails, and namespaces left by a process that died are swept at the next creation.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PREFIX = "fleetrun-bh-"
POOL = ipaddress.IPv4Network("10.203.0.0/16")
_LOCK = Path("/run/fleetrun-netns.lock")
_counter = itertools.count()


class NetnsError(RuntimeError):
    """The namespace could not be set up (not root, no `ip`, ...)."""


@dataclass(frozen=True, slots=True)
class Blackhole:
    """A namespace whose address accepts SYNs and never answers."""

    namespace: str
    veth: str  # the root-namespace end
    host_address: str  # our side of the /30
    address: str  # the unanswering side


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _in_use() -> set[ipaddress.IPv4Network]:
    out = _ip("-o", "-4", "addr", "show").stdout
    nets = set()
    for cidr in re.findall(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", out):
        nets.add(ipaddress.IPv4Interface(cidr).network)
    return nets


def _sweep_stale() -> None:
    """Remove namespaces left by test processes that no longer exist."""
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = re.fullmatch(rf"{PREFIX}(\d+)-\d+", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _ip("netns", "delete", name, check=False)


def _destroy(bh: Blackhole) -> None:
    # Deleting the namespace deletes the veth pair with it; the link delete is for a half-built
    # setup where the pair never made it into the namespace.
    _ip("netns", "delete", bh.namespace, check=False)
    _ip("link", "delete", bh.veth, check=False)


@contextlib.contextmanager
def blackhole_namespace() -> Iterator[Blackhole]:
    """Create the namespace (see the module docstring) for the duration of the block."""
    if os.geteuid() != 0:
        raise NetnsError("network namespaces need root (CI runs the suite as root)")
    n = next(_counter)
    name = f"{PREFIX}{os.getpid()}-{n}"
    # Interface names have at most 15 characters: fleetrun- + 6 of our own.
    veth = f"fleetrun-{os.getpid() % 10**4:04d}{n % 100:02d}"
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _sweep_stale()
        used = _in_use()
        subnets = list(POOL.subnets(new_prefix=30))
        random.shuffle(subnets)
        net = next((s for s in subnets if not any(s.overlaps(u) for u in used)), None)
        if net is None:
            raise NetnsError(f"no free /30 left in {POOL}")
        host_ip, ns_ip = (str(a) for a in itertools.islice(net.hosts(), 2))
        bh = Blackhole(name, veth, host_ip, ns_ip)
        _destroy(bh)  # idempotent: a leftover of the same name from an earlier crash
        try:
            _ip("netns", "add", name)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip("addr", "add", f"{host_ip}/30", "dev", veth)
            _ip("link", "set", veth, "up")
            _ip("-n", name, "addr", "add", f"{ns_ip}/30", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "route", "add", "blackhole", f"{host_ip}/32")
        except BaseException:
            _destroy(bh)
            raise
    try:
        yield bh
    finally:
        _destroy(bh)
