"""Fleet settings, behaviour profiles and host addressing — pure, no I/O."""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
DEFAULT_BASE_ADDRESS = "127.1.0.1"
DEFAULT_PORT = 2200
DEFAULT_DIR = Path(".stack/simfleet")
DEFAULT_HUGE_BYTES = 256 * 1024 * 1024
MAX_HOSTS = 99_999  # names are sim00001..sim99999


class ConfigError(ValueError):
    """A setting of the simulated fleet is invalid; the message says which and why."""


class Behaviour(enum.StrEnum):
    """What a simulated host does; chosen per host by the seeded profile."""

    OK = "ok"
    FAIL = "fail"
    SLOW = "slow"
    HANG = "hang"
    HUGE = "huge"
    DISCONNECT = "disconnect"
    SLOW_HANDSHAKE = "slow_handshake"
    AUTH_FAIL = "auth_fail"
    WRONG_KEY = "wrong_key"
    DEAD = "dead"


class Spread(enum.StrEnum):
    """How hosts are told apart: one loopback address each, or one port each."""

    ADDRESS = "address"
    PORT = "port"


class SimHost(NamedTuple):
    """One simulated host as clients see it."""

    name: str
    address: str
    port: int
    behaviour: Behaviour


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything the simulated fleet needs; built once at the edge (CLI or tests)."""

    hosts: int
    dir: Path = DEFAULT_DIR
    profile: str = "ok=1"
    seed: int = 1
    base_address: str = DEFAULT_BASE_ADDRESS
    port: int = DEFAULT_PORT  # 0: every listener picks a free port (address spread only)
    spread: Spread = Spread.ADDRESS
    slow_s: float = 3.0
    handshake_delay_s: float = 5.0
    huge_bytes: int = DEFAULT_HUGE_BYTES
    max_connections: int | None = None  # None: as many as the fd limit allows, at most hosts
    backlog: int = 128
    user: str = "sim"

    def __post_init__(self) -> None:
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise ConfigError(f"hosts: {self.hosts} is outside 1..{MAX_HOSTS}")
        if self.slow_s < 0 or self.handshake_delay_s < 0:
            raise ConfigError("slow_s and handshake_delay_s must be >= 0")
        if self.huge_bytes < 0:
            raise ConfigError(f"huge_bytes: {self.huge_bytes} must be >= 0")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError(f"max_connections: {self.max_connections} must be >= 1")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: {self.port} is not a TCP port")
        if self.spread is Spread.PORT and self.port == 0:
            raise ConfigError("port 0 (pick free ports) needs spread=address")
        parse_profile(self.profile)
        host_endpoints(self.hosts, self.base_address, self.port, self.spread)


def parse_profile(text: str) -> dict[Behaviour, float]:
    """Parse `ok=0.9,fail=0.03,...` into normalised weights.

    Weights may be fractions or counts. When they are fractions summing to less than 1 and
    `ok` is not named, `ok` takes the remainder.
    """
    weights: dict[Behaviour, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"profile: {item!r} is not name=weight")
        try:
            behaviour = Behaviour(name.strip())
        except ValueError:
            known = ", ".join(b.value for b in Behaviour)
            raise ConfigError(f"profile: unknown behaviour {name!r} (known: {known})") from None
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(f"profile: weight {value!r} of {name} is not a number") from None
        if weight < 0 or weight != weight or weight == float("inf"):
            raise ConfigError(f"profile: weight {value!r} of {name} must be finite and >= 0")
        if behaviour in weights:
            raise ConfigError(f"profile: {name} appears twice")
        weights[behaviour] = weight
    total = sum(weights.values())
    if Behaviour.OK not in weights and total < 1:
        weights[Behaviour.OK] = 1 - total
        total = 1
    if total <= 0:
        raise ConfigError(f"profile: {text!r} gives no host any behaviour")
    return {b: w / total for b, w in weights.items() if w > 0}


def assign_behaviours(n: int, profile: str, seed: int) -> list[Behaviour]:
    """Give each of n hosts a behaviour: exact counts (largest remainder), seeded order."""
    weights = parse_profile(profile)
    quotas = {b: w * n for b, w in weights.items()}
    counts = {b: int(q) for b, q in quotas.items()}
    # Ties break by behaviour order so the result depends only on (n, profile, seed).
    order = list(Behaviour)
    by_remainder = sorted(quotas, key=lambda b: (counts[b] - quotas[b], order.index(b)))
    for b in by_remainder[: n - sum(counts.values())]:
        counts[b] += 1
    behaviours = [b for b in Behaviour for _ in range(counts.get(b, 0))]
    random.Random(seed).shuffle(behaviours)
    return behaviours


def host_name(index: int) -> str:
    """Name of the host with 1-based index: sim00001."""
    return f"sim{index:05d}"


def host_endpoints(n: int, base_address: str, port: int, spread: Spread) -> list[tuple[str, int]]:
    """(address, port) of hosts 1..n; refuses anything outside 127.0.0.0/8."""
    try:
        base = ipaddress.IPv4Address(base_address)
    except ValueError:
        raise ConfigError(f"base_address: {base_address!r} is not an IPv4 address") from None
    first, last = int(LOOPBACK.network_address) + 1, int(LOOPBACK.broadcast_address) - 1
    span = 1 if spread is Spread.PORT else n
    if not first <= int(base) <= int(base) + span - 1 <= last:
        raise ConfigError(
            f"base_address: {base} with {span} address(es) leaves the usable loopback range "
            f"{ipaddress.IPv4Address(first)}-{ipaddress.IPv4Address(last)}"
        )
    if spread is Spread.PORT:
        if port + n - 1 > 65535:
            raise ConfigError(f"port: {port} + {n} hosts runs past 65535")
        return [(str(base), port + i) for i in range(n)]
    return [(str(base + i), port) for i in range(n)]


def build_hosts(config: FleetConfig) -> list[SimHost]:
    """The fleet's hosts with their behaviours; ports are the configured ones (0 until bound)."""
    endpoints = host_endpoints(config.hosts, config.base_address, config.port, config.spread)
    behaviours = assign_behaviours(config.hosts, config.profile, config.seed)
    return [
        SimHost(host_name(i + 1), address, port, behaviour)
        for i, ((address, port), behaviour) in enumerate(zip(endpoints, behaviours, strict=True))
    ]


def fail_status(seed: int, name: str) -> int:
    """The exit status (1..3) a `fail` host answers with; stable per (seed, host)."""
    digest = hashlib.sha256(f"simfleet-fail/{seed}/{name}".encode()).digest()
    return digest[0] % 3 + 1
