"""Why a host key was refused, in words: unknown, changed, revoked, no CA signature, no host-key
type in common. Every such refusal is `host_key_mismatch` (never retried), never `unreachable`.

asyncssh says "Host key is not trusted" alike for a host missing from known_hosts and for a
host whose key changed; known_hosts itself (`SSHKnownHosts.match`) tells the two apart. Worse,
when known_hosts trusts only an SSH CA for a host, asyncssh offers only certificate types; a
host without a certificate then closes the connection during key exchange, which reaches us as
a reset, like a network fault. The server's KEXINIT (the first packet it sends, in clear) lists
the host-key types it has: read it once more on such a failure and compare with ours. asyncssh
has no public hook for the peer's KEXINIT, hence the few lines of packet reading here.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import asyncssh
from asyncssh.public_key import get_default_certificate_algs, get_default_public_key_algs

if TYPE_CHECKING:
    from collector.inventory import HostSpec

_KEXINIT: Final = 20  # SSH_MSG_KEXINIT
_MAX_PACKET: Final = 35_000  # RFC 4253 6.1: what every implementation must accept
_MAX_PRE_BANNER_LINES: Final = 20
_PROBE_BANNER: Final = b"SSH-2.0-fleetrun_hostkey_probe\r\n"
_CERT_SUFFIX: Final = "-cert-v01@openssh.com"

# What a connection that died during key exchange raises; a timeout is not one of them
# (nothing says the host answered at all).
NEGOTIATION_LOST: Final[tuple[type[BaseException], ...]] = (
    asyncssh.ConnectionLost,
    asyncssh.KeyExchangeFailed,
    ConnectionResetError,
    BrokenPipeError,
)


class KexinitError(ValueError):
    """The server's first packet was not a readable KEXINIT."""


@dataclass(frozen=True, slots=True)
class Trust:
    """What known_hosts says about one host: the keys it trusts for it, and CAs."""

    host_keys: tuple[asyncssh.SSHKey, ...]
    ca_keys: tuple[asyncssh.SSHKey, ...]
    source: str  # the known_hosts file, for messages

    @classmethod
    def of(
        cls, known_hosts: asyncssh.SSHKnownHosts, names: Sequence[str], port: int, source: str
    ) -> Trust:
        """The trust entries matching any of `names` (host name, address) at `port`."""
        host_keys: list[asyncssh.SSHKey] = []
        ca_keys: list[asyncssh.SSHKey] = []
        for name in dict.fromkeys(n for n in names if n):
            keys, cas, *_ = known_hosts.match(name, name, None if port == 22 else port)
            host_keys += [k for k in keys if k not in host_keys]
            ca_keys += [k for k in cas if k not in ca_keys]
        return cls(tuple(host_keys), tuple(ca_keys), source)

    @property
    def restrictive(self) -> bool:
        """Whether known_hosts narrows the host-key types we offer (asyncssh's rule)."""
        return bool(self.host_keys or self.ca_keys)

    def offered(self) -> tuple[str, ...]:
        """The host-key types asyncssh offers for this host (as in its `_connect`)."""
        algs: list[bytes] = []
        for key in self.host_keys:
            algs += [a for a in key.sig_algorithms if a not in algs]
        if self.ca_keys:
            algs = list(get_default_certificate_algs()) + algs
        if not algs:
            algs = list(get_default_certificate_algs()) + list(get_default_public_key_algs())
        return tuple(a.decode() for a in algs)


def parse_kexinit(payload: bytes) -> tuple[str, ...]:
    """The server host-key algorithms of a KEXINIT payload (message type byte included)."""
    if not payload or payload[0] != _KEXINIT:
        raise KexinitError(f"expected KEXINIT, got message type {payload[:1].hex() or 'none'}")
    offset = 1 + 16  # type, cookie
    lists: list[str] = []
    for _ in range(2):  # kex algorithms, then server host key algorithms
        if len(payload) < offset + 4:
            raise KexinitError("KEXINIT cut short")
        (length,) = struct.unpack_from(">I", payload, offset)
        offset += 4
        if len(payload) < offset + length:
            raise KexinitError("KEXINIT name-list cut short")
        lists.append(payload[offset : offset + length].decode("ascii", errors="replace"))
        offset += length
    return tuple(a for a in lists[1].split(",") if a)


class _Reader(Protocol):
    async def readline(self) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


async def read_host_key_algs(reader: _Reader, writer: _Writer) -> tuple[str, ...]:
    """Exchange banners on a fresh stream and read the server's host-key types from its
    KEXINIT (sent in clear, before anything of ours is needed but our banner)."""
    try:
        writer.write(_PROBE_BANNER)
        for _ in range(_MAX_PRE_BANNER_LINES):
            if (await reader.readline()).startswith(b"SSH-"):
                break
        else:
            raise KexinitError("no SSH banner")
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        if not 5 <= length <= _MAX_PACKET:
            raise KexinitError(f"implausible first packet length {length}")
        packet = await reader.readexactly(length)
        padding = packet[0]
        return parse_kexinit(packet[1 : length - padding])
    finally:
        writer.close()


def negotiation_reason(trust: Trust, server_algs: Sequence[str]) -> str | None:
    """Why no host-key type was agreed, or None when one is in common (the failure was not
    about host keys)."""
    offered = trust.offered()
    if set(offered) & set(server_algs):
        return None
    theirs = ", ".join(server_algs) or "none"
    plain_only = not any(a.endswith(_CERT_SUFFIX) for a in server_algs)
    if trust.ca_keys and not trust.host_keys and plain_only:
        return (
            f"no CA signature: {trust.source} trusts only keys signed by an @cert-authority "
            f"for this host, and it presents no certificate (it offers {theirs}); sign its "
            "host key with the CA, or list the key itself"
        )
    ours = ", ".join(a for a in offered if not a.endswith(_CERT_SUFFIX))
    if trust.ca_keys:
        ours = (ours + " or " if ours else "") + "certificates from its @cert-authority"
    return (
        f"no host-key type in common: {trust.source} lets us accept {ours} for this host, "
        f"and it offers {theirs}"
    )


def not_verifiable_reason(exc: asyncssh.HostKeyNotVerifiable, trust: Trust) -> str:
    """asyncssh's refusal reworded with which of the reasons it is."""
    said = exc.reason
    lowered = said.lower()
    if "revoked" in lowered:
        why = f"revoked key: {trust.source} marks it @revoked"
    elif "ca key is not trusted" in lowered:
        why = f"no trusted CA signature: its certificate's CA is not in {trust.source}"
    elif "principal" in lowered or "certificate" in lowered:
        why = "certificate not valid for this host"
    elif trust.host_keys:
        why = (
            f"changed key: {trust.source} holds another key for this host (reinstalled, or "
            "someone else answers at its address); check, then update known_hosts"
        )
    elif trust.ca_keys:
        why = f"no CA signature: {trust.source} trusts only keys signed by an @cert-authority here"
    else:
        why = f"unknown key: this host is not in {trust.source}"
    return f"{why} ({said})"


async def explain(
    exc: BaseException,
    host: HostSpec,
    known_hosts: asyncssh.SSHKnownHosts,
    source: Path | None,
    tunnel: asyncssh.SSHClientConnection | None,
    timeout_s: float,
) -> asyncssh.HostKeyNotVerifiable | None:
    """A host-key refusal saying why, for a connect failure that was one (else None)."""
    if not isinstance(exc, (asyncssh.HostKeyNotVerifiable, *NEGOTIATION_LOST)):
        return None
    names = (host.config_host or host.address, host.address)
    trust = Trust.of(known_hosts, names, host.port, source_name(source))
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return asyncssh.HostKeyNotVerifiable(not_verifiable_reason(exc, trust))
    why = await probe_reason(trust, host.address, host.port, tunnel, timeout_s)
    return None if why is None else asyncssh.HostKeyNotVerifiable(why)


async def probe_reason(
    trust: Trust,
    address: str,
    port: int,
    tunnel: asyncssh.SSHClientConnection | None,
    timeout_s: float,
) -> str | None:
    """On a connection lost during key exchange: the host-key reason, if it was one."""
    if not trust.restrictive or timeout_s <= 0:
        return None  # every type offered: no host-key type can be missing
    try:
        async with asyncio.timeout(timeout_s):
            if tunnel is None:
                reader, writer = await asyncio.open_connection(address, port)
                algs = await read_host_key_algs(reader, writer)
            else:
                t_reader, t_writer = await tunnel.open_connection(address, port)
                algs = await read_host_key_algs(t_reader, t_writer)
    except (OSError, TimeoutError, EOFError, KexinitError, asyncssh.Error):
        return None  # the host really is hard to reach: the original error stands
    return negotiation_reason(trust, algs)


def source_name(path: Path | None) -> str:
    """How messages name the known_hosts file."""
    return f"known_hosts {path}" if path else "known_hosts"
