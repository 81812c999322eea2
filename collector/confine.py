"""Confinement to the inventory: which targets a request may name, and which overrides it uses.

By default a collector runs only on hosts its inventory lists, with the login user and port the
inventory (or the ssh_config it builds on) gives them. A target can step outside that in three
ways, each an *override*:

    outside_inventory   a name or address that is neither a [hosts] entry, a [groups] member,
                        nor the address of a host reached directly (without a jump host)
    user                `user@host` with a user the inventory does not give that host
    port                `host:port` with a port the inventory does not give that host

Spelling what the inventory already says (`fleetrun@demo1:2222` when demo1 is fleetrun on port
2222) is not an override: the endpoint is the inventory's. The operator allows overrides with
the collector setting `allow_targets` (`FLEETRUN_COLLECTOR_ALLOW_TARGETS=user,port`); a
command policy's rule adds its own `overrides` for its principals (collector.admission plans
with every override then, and the policy refuses what neither allows).
A refused request runs nowhere and connects nowhere (`check_confined` raises before any host
is planned; the listing reads only the inventory and the ssh_config, never the network), so the
collector is neither an SSH pivot nor a port scanner.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

from schemas import Target, TargetError, expand_targets

Override = Literal["outside_inventory", "user", "port"]
OVERRIDES: Final[tuple[Override, ...]] = get_args(Override)
SETTING: Final = "FLEETRUN_COLLECTOR_ALLOW_TARGETS"

_WHAT: Final[dict[Override, str]] = {
    "outside_inventory": "is not in this collector's inventory (a host, a group member, or a "
    "host's own address, user and port)",
    "user": "sets the login user",
    "port": "sets the port",
}
_RULE: Final[dict[Override, str]] = {
    "outside_inventory": "runs commands only on inventory hosts",
    "user": "takes users from the inventory",
    "port": "takes ports from the inventory",
}


class Listing(Protocol):
    """What confinement asks the inventory (collector.inventory.Inventory.listing answers)."""

    def uses(self, target: Target) -> tuple[Override, ...]: ...  # () = an inventory endpoint


class Endpoint(Protocol):
    """What the listing reads of a resolved host (collector.inventory.HostSpec has it)."""

    @property
    def user(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def address(self) -> str: ...
    @property
    def jump(self) -> object | None: ...


class InventoryListing:
    """`Listing` over an inventory's hosts and groups (the index is built once, on first use).

    Listed: [hosts] names and [groups] members, with the users and ports the inventory gives
    them (a member may spell its own `user@` / `:port`); and the address of a host reached
    directly, but only with that host's own user and port. Behind a jump host the same
    address, named raw, would be reached by another route, so it is not listed.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        groups: Mapping[str, Sequence[str]],
        resolve: Callable[[Target], Endpoint],
    ) -> None:
        self._resolve = resolve
        # name → the inventory's own spellings of it
        self._spellings: dict[str, list[Target]] = {name: [Target(name)] for name in hosts}
        for group in groups:
            for t in expand_targets([f"@{group}"], groups, allow_empty=True):
                self._spellings.setdefault(t.name, []).append(t)
        self._addresses: dict[str, list[Target]] = {}  # address → the hosts reached at it
        for name in hosts:
            spec = self._endpoint(Target(name))
            if spec is not None and spec.jump is None and spec.address not in self._spellings:
                self._addresses.setdefault(spec.address, []).append(Target(name))

    def uses(self, target: Target) -> tuple[Override, ...]:
        spellings = self._spellings.get(target.name, [])
        if not spellings and target.name not in self._addresses:
            return _outside(target)
        if spellings and target.user is None and target.port is None:
            return ()
        given = [e for e in map(self._endpoint, spellings) if e is not None]
        at_address = [
            e
            for e in map(self._endpoint, self._addresses.get(target.name, ()))
            if e is not None and e.jump is None and e.address == target.name
        ]
        given += at_address
        uses: list[Override] = []
        if target.user is not None and target.user not in {e.user for e in given}:
            uses.append("user")
        if target.port is not None and target.port not in {e.port for e in given}:
            uses.append("port")
        if not uses and not spellings:
            # An address: what the collector would connect to must be one host's endpoint.
            spec = self._endpoint(target)
            if spec is None or (spec.user, spec.port) not in {(e.user, e.port) for e in given}:
                uses.append("outside_inventory")
        return tuple(uses)

    def _endpoint(self, target: Target) -> Endpoint | None:
        try:
            return self._resolve(target)
        except Exception:  # an unusable host lists nothing here; planning reports it as its result
            return None


def _outside(target: Target) -> tuple[Override, ...]:
    return (
        "outside_inventory",
        *(("user",) if target.user is not None else ()),
        *(("port",) if target.port is not None else ()),
    )


@dataclass(frozen=True, slots=True)
class TargetOverride:
    """One expanded target and the overrides it uses (never empty)."""

    target: Target
    uses: tuple[Override, ...]


@dataclass(frozen=True, slots=True)
class RequestOverrides:
    """Which overrides a request's targets use: what a policy consults to allow them.

    `kinds` is the set a rule is checked against; `targets` says which target uses which, in
    target order, for the message that names the first one refused.
    """

    targets: tuple[TargetOverride, ...] = ()

    @property
    def kinds(self) -> frozenset[Override]:
        return frozenset(kind for t in self.targets for kind in t.uses)

    def refused(self, allowed: Collection[Override]) -> list[TargetOverride]:
        """The targets using an override not in `allowed`, each with only the refused ones."""
        out = []
        for t in self.targets:
            uses = tuple(kind for kind in t.uses if kind not in allowed)
            if uses:
                out.append(TargetOverride(t.target, uses))
        return out


class TargetNotAllowed(TargetError):
    """A target uses an override the collector (or, later, the policy) does not allow."""

    def __init__(self, path: str, problem: str, rule: str = "confined") -> None:
        super(TargetError, self).__init__(path, problem, rule)


def request_overrides(targets: Iterable[Target], inventory: Listing) -> RequestOverrides:
    """Which overrides the expanded `targets` use, target by target."""
    found = []
    for target in targets:
        uses = inventory.uses(target)
        if uses:
            found.append(TargetOverride(target, uses))
    return RequestOverrides(tuple(found))


def check_confined(
    targets: Iterable[Target], inventory: Listing, allowed: Collection[Override]
) -> RequestOverrides:
    """Raise TargetNotAllowed naming the first refused target and its rules; else return the
    overrides used (all allowed), for logs and audit."""
    overrides = request_overrides(targets, inventory)
    refused = overrides.refused(allowed)
    if refused:
        raise TargetNotAllowed("targets", refusal_message(refused))
    return overrides


def refusal_message(refused: list[TargetOverride]) -> str:
    """E.g. "target 'root@demo1' sets the login user; this collector takes users from the
    inventory (allow with FLEETRUN_COLLECTOR_ALLOW_TARGETS=user)"."""
    first = refused[0]
    what = _and([_WHAT[kind] for kind in first.uses])
    rule = _and([_RULE[kind] for kind in first.uses])
    allow = ",".join(first.uses)
    more = f" (and {len(refused) - 1} more refused target(s))" if len(refused) > 1 else ""
    allow_with = f"(allow with {SETTING}={allow})"
    return f"target '{first.target}' {what}; this collector {rule} {allow_with}{more}"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
