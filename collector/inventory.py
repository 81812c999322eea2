"""The collector's inventory: groups for target expansion and how to reach each host.

TOML, every table optional::

    [defaults]                      # for every host the [hosts] table does not override
    user = "fleetrun"
    port = 22
    client_keys = ["keys/id_ed25519"]   # relative paths are relative to the inventory file
    jump = "bastion"                # reach hosts through this inventory host ("" = directly)
    known_hosts = "known_hosts"     # instead of the collector's ssh_known_hosts setting

    [hosts.web01]                   # or [hosts] web01 = { address = ..., ... }
    address = "10.0.0.5"            # what to connect to (default: the name itself)
    port = 2222
    user = "deploy"
    client_keys = ["/etc/fleetrun/deploy_key"]
    jump = "bastion"

    [groups]
    web = ["web[01-20]", "web-canary"]   # members are target expressions (ranges, @groups, !x)

Precedence for each value: the target itself (`user@host:port`, only where the collector allows
such overrides: collector.confine) > `[hosts.<name>]` > `[defaults]` > the OpenSSH client config
(settings.ssh_config, parsed by asyncssh: HostName, User, Port, IdentityFile, ProxyJump) > the
collector's settings (ssh_user, ssh_client_keys) > SSH defaults (port 22, the local user). Keys
a host table does not know are kept as free metadata (e.g. the simulated fleet's `behaviour`),
except near-misses of known keys (`adress`), which are errors, as are wrong types, unknown
top-level tables, unknown `jump` hosts and jump cycles.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import getpass
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncssh.config import SSHClientConfig

from collector.confine import InventoryListing
from collector.passwords import PasswordError, Passwords, parse_passwords
from collector.settings import CollectorSettings
from schemas import Target, TargetError, check_targets, expand_targets

DEFAULT_PORT = 22
_HOST_KEYS = frozenset({"address", "port", "user", "client_keys", "jump", "known_hosts"})
_DEFAULT_KEYS = frozenset({"port", "user", "client_keys", "jump", "known_hosts"})
_TOP_KEYS = frozenset({"defaults", "hosts", "groups", "passwords"})  # see collector.passwords
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


class InventoryError(ValueError):
    """The inventory (or the ssh_config it builds on) cannot be used; the message says where."""

    retriable = False


@dataclass(frozen=True, slots=True)
class HostSpec:
    """How to reach one host: everything the SSH executor needs, resolved."""

    name: str  # the host as named in the target / inventory: what Result.host reports
    address: str  # what to connect to (inventory `address`, ssh_config HostName, or name)
    port: int
    user: str
    client_keys: tuple[Path, ...] = ()  # () = the collector's default keys
    jump: HostSpec | None = None  # ProxyJump / inventory `jump`
    known_hosts: Path | None = None  # None = the collector's ssh_known_hosts setting
    # The name asyncssh matches ssh_config `Host` blocks against ("" = no ssh_config applies):
    # the alias when the address came from HostName, else the address the inventory gave.
    config_host: str = ""

    def __str__(self) -> str:
        via = f" via {self.jump}" if self.jump else ""
        return f"{self.user}@{self.name}({self.address}:{self.port}){via}"


@dataclass(frozen=True, slots=True)
class _Entry:
    address: str | None = None
    port: int | None = None
    user: str | None = None
    client_keys: tuple[Path, ...] | None = None
    jump: str | None = None  # "" = explicitly direct
    known_hosts: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _ConfigHost:
    """What the OpenSSH client config says about one host name."""

    hostname: str | None
    user: str | None
    port: int | None
    identity_files: tuple[Path, ...]
    proxy_jump: str | None


class Inventory:
    """Groups and per-host connection settings; `resolve` turns a Target into a HostSpec."""

    def __init__(
        self,
        settings: CollectorSettings,
        *,
        hosts: Mapping[str, _Entry] | None = None,
        defaults: _Entry | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        source: str = "(no inventory)",
        passwords: Passwords | None = None,
    ) -> None:
        self._settings = settings
        self.passwords = passwords or Passwords()  # who logs in with a password, read late
        self._hosts = dict(hosts or {})
        self._defaults = defaults or _Entry()
        self.groups: Mapping[str, Sequence[str]] = {k: tuple(v) for k, v in (groups or {}).items()}
        self.source = source

    @classmethod
    def load(cls, path: Path | None, settings: CollectorSettings) -> Inventory:
        """Read and validate `path` (default: settings.inventory; neither = empty inventory)."""
        path = path if path is not None else settings.inventory
        if settings.ssh_config is not None and not settings.ssh_config.is_file():
            raise InventoryError(f"ssh_config {settings.ssh_config}: no such file")
        if path is None:
            return cls(settings)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise InventoryError(f"{path}: no such inventory file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InventoryError(f"{path}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InventoryError(f"{path}: not valid TOML: {exc}") from None
        inventory = _parse(data, path, settings)
        inventory._check_jumps()
        return inventory

    @property
    def hosts(self) -> tuple[str, ...]:
        """Names of the hosts the inventory describes."""
        return tuple(self._hosts)

    @functools.cached_property
    def listing(self) -> InventoryListing:
        """Which names this inventory lists, for confinement (collector.confine)."""
        return InventoryListing(self.hosts, self.groups, self.resolve)

    def metadata(self, name: str) -> Mapping[str, Any]:
        """Free keys of a host's table (not used by the collector), e.g. `behaviour`."""
        entry = self._hosts.get(name)
        return entry.extra if entry else {}

    def resolve(self, target: Target) -> HostSpec:
        """Where and how to connect for `target`; InventoryError for an unusable jump chain."""
        return self._resolve(target.name, target.user, target.port, ())

    def _resolve(
        self, name: str, user: str | None, port: int | None, chain: tuple[str, ...]
    ) -> HostSpec:
        if name in chain:
            raise InventoryError(f"jump hosts loop: {' → '.join((*chain, name))}")
        entry = self._hosts.get(name, _Entry())
        d = self._defaults
        cfg = self._ssh_config(name)
        address = entry.address or cfg.hostname or name
        config_host = ""
        if self._settings.ssh_config is not None:
            config_host = name if entry.address is None else entry.address
        keys = entry.client_keys or d.client_keys or cfg.identity_files
        jump_name = entry.jump if entry.jump is not None else d.jump
        jump: HostSpec | None = None
        if jump_name:
            # [defaults] jump = "bastion" does not apply to bastion itself.
            if jump_name != name:
                jump = self._resolve(jump_name, None, None, (*chain, name))
        elif jump_name is None and cfg.proxy_jump:
            jump = self._proxy_jump(cfg.proxy_jump, name, chain)
        return HostSpec(
            name=name,
            address=address,
            port=port or entry.port or d.port or cfg.port or DEFAULT_PORT,
            user=user
            or entry.user
            or d.user
            or cfg.user
            or self._settings.ssh_user
            or getpass.getuser(),
            client_keys=keys or (),
            jump=jump,
            known_hosts=entry.known_hosts or d.known_hosts,
            config_host=config_host,
        )

    def _proxy_jump(self, value: str, name: str, chain: tuple[str, ...]) -> HostSpec | None:
        """ProxyJump `[user@]host[:port][,...]`: the last hop is the one next to `name`."""
        if value.lower() == "none":
            return None
        spec: HostSpec | None = None
        for hop in value.split(","):
            user, _, hostport = hop.strip().rpartition("@")
            host, port = hostport, None
            if hostport.count(":") == 1:
                host, port_text = hostport.split(":")
                if not port_text.isdigit():
                    raise InventoryError(f"ssh_config: ProxyJump {value!r} for {name}: bad port")
                port = int(port_text)
            if host == name:  # `Host * ProxyJump bastion` does not apply to bastion itself
                continue
            hop_spec = self._resolve(host, user or None, port, (*chain, name))
            if spec is not None:  # an earlier hop carries this one
                hop_spec = _with_jump(hop_spec, spec)
            spec = hop_spec
        return spec

    def _ssh_config(self, name: str) -> _ConfigHost:
        path = self._settings.ssh_config
        if path is None:
            return _NO_CONFIG
        try:
            mtime = path.stat().st_mtime_ns
        except OSError as exc:
            raise InventoryError(f"ssh_config {path}: {exc}") from None
        return _lookup_ssh_config(path, mtime, name)

    def _check_jumps(self) -> None:
        for name, entry in self._hosts.items():
            jump = entry.jump if entry.jump is not None else self._defaults.jump
            if jump and jump != name:
                self._resolve(name, None, None, ())


_NO_CONFIG = _ConfigHost(None, None, None, (), None)


@functools.lru_cache(maxsize=16_384)
def _lookup_ssh_config(path: Path, mtime_ns: int, name: str) -> _ConfigHost:
    """asyncssh's own parser applied to `name` (cached until the file changes)."""
    del mtime_ns  # part of the cache key only
    try:
        local_user = getpass.getuser()
        cfg = SSHClientConfig.load(None, [path], False, False, False, local_user, (), name, ())
    except (OSError, ValueError) as exc:
        raise InventoryError(f"ssh_config {path}: {exc}") from None
    port = cfg.get("Port")
    user = cfg.get("User")
    hostname = cfg.get("Hostname")
    proxy = cfg.get("ProxyJump")
    files = cfg.get("IdentityFile") or ()
    return _ConfigHost(
        hostname=str(hostname) if hostname else None,
        user=str(user) if user else None,
        port=int(port) if isinstance(port, int) else None,
        identity_files=tuple(Path(str(f)).expanduser() for f in files),  # type: ignore[attr-defined]
        proxy_jump=str(proxy) if proxy else None,
    )


def _with_jump(spec: HostSpec, jump: HostSpec) -> HostSpec:
    """`spec` reached through `jump` (appended at the far end of spec's own chain)."""
    inner = jump if spec.jump is None else _with_jump(spec.jump, jump)
    return dataclasses.replace(spec, jump=inner)


# -- parsing and validation ---------------------------------------------------------------------


def _parse(data: dict[str, Any], path: Path, settings: CollectorSettings) -> Inventory:
    for key in data:
        if key not in _TOP_KEYS:
            raise InventoryError(f"{path}: {key}: unknown table{_hint(key, _TOP_KEYS)}")
    base = path.parent
    defaults = _entry(_table(data, "defaults", path), "defaults", path, base, _DEFAULT_KEYS)
    hosts: dict[str, _Entry] = {}
    for name, table in _table(data, "hosts", path).items():
        where = f"hosts.{name}"
        if not (_NAME.match(name) and len(name) <= 253):
            raise InventoryError(f"{path}: {where}: {name!r} is not a valid host name")
        if not isinstance(table, dict):
            raise InventoryError(f"{path}: {where}: must be a table, not {_kind(table)}")
        hosts[name] = _entry(table, where, path, base, _HOST_KEYS)
    groups = _groups(_table(data, "groups", path), path)
    for name, entry in {"defaults": defaults, **hosts}.items():
        where = name if name == "defaults" else f"hosts.{name}"
        if entry.jump and entry.jump == name and where != "defaults":
            raise InventoryError(f"{path}: {where}.jump: a host cannot jump through itself")
        if entry.jump and entry.jump not in hosts:
            raise InventoryError(
                f"{path}: {where}.jump: {entry.jump!r} is not a host in [hosts]"
                f"{_hint(entry.jump, hosts)}"
            )
    try:
        passwords = parse_passwords(_table(data, "passwords", path), path, groups)
    except PasswordError as exc:
        raise InventoryError(str(exc)) from None
    return Inventory(
        settings,
        hosts=hosts,
        defaults=defaults,
        groups=groups,
        source=str(path),
        passwords=passwords,
    )


def _table(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise InventoryError(f"{path}: {key}: must be a table, not {_kind(value)}")
    return value


def _entry(
    table: dict[str, Any], where: str, path: Path, base: Path, known: frozenset[str]
) -> _Entry:
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in table.items():
        at = f"{path}: {where}.{key}"
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
            if close or key in _HOST_KEYS:  # a typo, or a host-only key in [defaults]
                hint = f"; did you mean {close[0]!r}?" if close else " (only in [hosts.<name>])"
                raise InventoryError(f"{at}: unknown key{hint}")
            extra[key] = value
        elif key == "port":
            if type(value) is not int or not 1 <= value <= 65535:
                raise InventoryError(f"{at}: must be a whole number from 1 to 65535, not {value!r}")
            values[key] = value
        elif key in ("address", "user", "jump"):
            if not isinstance(value, str):
                raise InventoryError(f"{at}: must be a string, not {_kind(value)}")
            if key == "address" and (not value or any(c.isspace() for c in value)):
                raise InventoryError(f"{at}: {value!r} is not an address or host name")
            if key == "user" and not _USER.match(value):
                raise InventoryError(f"{at}: {value!r} is not a valid user name")
            values[key] = value
        elif key == "client_keys":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise InventoryError(f"{at}: must be a list of key file paths (strings)")
            values[key] = tuple(_path(v, base) for v in value)
        elif key == "known_hosts":
            if not isinstance(value, str) or not value:
                raise InventoryError(f"{at}: must be a file path (string)")
            values[key] = _path(value, base)
    return _Entry(**values, extra=extra)


def _groups(table: dict[str, Any], path: Path) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in table.items():
        where = f"{path}: groups.{name}"
        if not _NAME.match(name):
            raise InventoryError(f"{where}: {name!r} is not a valid group name")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InventoryError(f"{where}: must be a list of target expressions (strings)")
        try:
            check_targets(members, path="members")
        except TargetError as exc:
            raise InventoryError(f"{where}: {exc}") from None
        groups[name] = tuple(members)
    for name in groups:  # unknown @groups, cycles and sizes: only visible when expanded
        try:
            expand_targets([f"@{name}"], groups, allow_empty=True)
        except TargetError as exc:
            raise InventoryError(f"{path}: groups.{name}: {exc}") from None
    return groups


def _path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _hint(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _kind(value: object) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
