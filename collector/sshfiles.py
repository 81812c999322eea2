"""Client keys and known_hosts, parsed once and re-read only when their files change.

asyncssh would otherwise read and parse them again for every connection: with a fleet-sized
known_hosts that is most of a handshake's CPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import asyncssh

_DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
_Pairs = Sequence[asyncssh.SSHKeyPair]


class KeyLoadError(ValueError):
    """A client key file is missing or unreadable."""


class KeyCache:
    """Loaded key pairs per tuple of key files."""

    def __init__(self) -> None:
        self._cache: dict[
            tuple[Path, ...], tuple[tuple[int, ...], Sequence[asyncssh.SSHKeyPair]]
        ] = {}

    def get(self, paths: Sequence[Path]) -> Sequence[asyncssh.SSHKeyPair] | tuple[()]:
        """The key pairs in `paths`; () (asyncssh's default keys) when there are none."""
        if not paths:
            return ()
        key = tuple(paths)
        try:
            stamp = tuple(os.stat(p).st_mtime_ns for p in key)
        except OSError as exc:
            raise KeyLoadError(f"client key {exc.filename}: {exc.strerror}") from None
        cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            pairs = asyncssh.load_keypairs([str(p) for p in key])
        except (OSError, asyncssh.KeyImportError, ValueError) as exc:
            raise KeyLoadError(f"client keys {', '.join(map(str, key))}: {exc}") from None
        self._cache[key] = (stamp, pairs)
        return pairs


class KnownHostsCache:
    """Parsed known_hosts files (with their @cert-authority and @revoked lines)."""

    def __init__(self, default: Path | None) -> None:
        self._default = default
        self._cache: dict[Path, tuple[tuple[int, int], asyncssh.SSHKnownHosts]] = {}

    def get(self, path: Path | None) -> asyncssh.SSHKnownHosts:
        """known_hosts for a host: its own file, the configured one, or ~/.ssh/known_hosts."""
        chosen = path or self._default
        if chosen is None:
            chosen = _DEFAULT_KNOWN_HOSTS.expanduser()
            if not chosen.exists():  # nothing trusted: every host key is "unknown"
                return asyncssh.import_known_hosts("")
        try:
            st = chosen.stat()
        except OSError as exc:
            raise OSError(exc.errno, f"known_hosts {chosen}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(chosen)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            parsed = asyncssh.read_known_hosts(str(chosen))
        except (OSError, ValueError) as exc:
            raise ValueError(f"known_hosts {chosen}: {exc}") from None
        self._cache[chosen] = (stamp, parsed)
        return parsed
