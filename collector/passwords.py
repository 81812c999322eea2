"""Passwords for hosts that take nothing else (network gear, appliances), from the collector's
own secrets: a file only its owner can read, or an environment variable. Never from a request.

The inventory names where each password is, per host or per group; keys and the agent stay
the default, and password authentication is on only for the hosts named here::

    [passwords]
    core-sw1 = { password_file = "secrets/core-sw1" }   # relative to the inventory file
    "@switches" = { password_env = "FLEETRUN_SWITCH_PASSWORD" }

A host's own entry wins over its groups'; a host in two groups with different sources is an
error (which one was meant cannot be guessed). The secret is read when a connection is opened,
not when the inventory is loaded: `fleetrun hosts` reads the same inventory without it, and a
rotated file is picked up by the next connection. Values are pydantic `SecretStr`: their repr
and str are masked, so a log line or an error message cannot print one by accident.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr

from schemas import TargetError, expand_targets

_KEYS: Final = frozenset({"password_env", "password_file"})
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HOST: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


class PasswordError(ValueError):
    """A password named by the inventory cannot be used; the message says why and the fix."""

    retriable = False


@dataclass(frozen=True, slots=True)
class PasswordSource:
    """Where one password is: exactly one of an environment variable and a file."""

    env: str | None = None
    file: Path | None = None
    origin: str = ""  # the inventory entry that named it, for messages

    def __str__(self) -> str:
        where = f"environment variable {self.env}" if self.env else f"password file {self.file}"
        return f"{where} ({self.origin})"


class Passwords:
    """Which hosts log in with a password, and reading it (files cached until they change)."""

    def __init__(
        self,
        by_host: Mapping[str, PasswordSource] | None = None,
        by_group: Mapping[str, tuple[PasswordSource, frozenset[str]]] | None = None,
    ) -> None:
        self._by_host = dict(by_host or {})
        self._by_group = dict(by_group or {})
        self._files: dict[Path, tuple[tuple[int, int, int], SecretStr]] = {}

    def source_for(self, host: str) -> PasswordSource | None:
        """Where `host`'s password is, or None (keys only)."""
        own = self._by_host.get(host)
        if own is not None:
            return own
        found = [src for src, members in self._by_group.values() if host in members]
        return found[0] if found else None

    def get(self, host: str) -> SecretStr | None:
        """`host`'s password, or None; PasswordError when it is named but unusable."""
        source = self.source_for(host)
        if source is None:
            return None
        if source.env is not None:
            value = os.environ.get(source.env, "")
            if not value:
                raise PasswordError(
                    f"{source} is not set (or empty) in the collector's environment"
                )
            return SecretStr(value)
        assert source.file is not None
        return self._read_file(source)

    def _read_file(self, source: PasswordSource) -> SecretStr:
        path = source.file
        assert path is not None
        try:
            st = path.stat()
        except OSError as exc:
            raise PasswordError(f"{source}: {exc.strerror}") from None
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise PasswordError(
                f"{source} is readable by its group or others (mode {mode:04o}): "
                f"`chmod 600 {path}`, then it is used"
            )
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._files.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PasswordError(f"{source}: cannot read: {type(exc).__name__}") from None
        value = text.removesuffix("\n").removesuffix("\r")  # the file's one line, as written
        if not value or "\n" in value:
            raise PasswordError(f"{source}: must hold the password on one line")
        secret = SecretStr(value)
        self._files[path] = (stamp, secret)
        return secret


def parse_passwords(
    table: Mapping[str, Any], path: Path, groups: Mapping[str, Sequence[str]]
) -> Passwords:
    """The inventory's `[passwords]` table, validated (nothing is read yet)."""
    by_host: dict[str, PasswordSource] = {}
    by_group: dict[str, tuple[PasswordSource, frozenset[str]]] = {}
    for who, spec in table.items():
        where = f"{path}: passwords.{who}"
        source = _source(spec, where, path.parent, f"inventory passwords.{who}")
        if who.startswith("@"):
            group = who[1:]
            if group not in groups:
                raise PasswordError(f"{where}: {group!r} is not a group in [groups]")
            try:
                members = expand_targets([who], groups, allow_empty=True)
            except TargetError as exc:
                raise PasswordError(f"{where}: {exc}") from None
            by_group[group] = (source, frozenset(t.name for t in members))
        elif _HOST.match(who):
            by_host[who] = source
        else:
            raise PasswordError(f"{where}: {who!r} is neither a host name nor an @group")
    _check_overlaps(by_host, by_group, path)
    return Passwords(by_host, by_group)


def _source(spec: object, where: str, base: Path, origin: str) -> PasswordSource:
    if not isinstance(spec, dict):
        raise PasswordError(
            f'{where}: must be a table: {{ password_env = "NAME" }} or {{ password_file = "path" }}'
        )
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise PasswordError(f"{where}: unknown key {unknown[0]!r} (password_env or password_file)")
    if len(spec) != 1:
        raise PasswordError(f"{where}: give exactly one of password_env and password_file")
    if "password_env" in spec:
        name = spec["password_env"]
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise PasswordError(f"{where}.password_env: must be an environment variable name")
        return PasswordSource(env=name, origin=origin)
    value = spec["password_file"]
    if not isinstance(value, str) or not value:
        raise PasswordError(f"{where}.password_file: must be a file path (string)")
    file = Path(value).expanduser()
    return PasswordSource(file=file if file.is_absolute() else base / file, origin=origin)


def _check_overlaps(
    by_host: Mapping[str, PasswordSource],
    by_group: Mapping[str, tuple[PasswordSource, frozenset[str]]],
    path: Path,
) -> None:
    seen: dict[str, tuple[str, PasswordSource]] = {}
    for group, (source, members) in by_group.items():
        for host in members - by_host.keys():
            first = seen.setdefault(host, (group, source))
            if (first[1].env, first[1].file) != (source.env, source.file):
                raise PasswordError(
                    f"{path}: passwords: {host} is in @{first[0]} and @{group}, which name "
                    f"different passwords; give {host} its own entry in [passwords]"
                )
