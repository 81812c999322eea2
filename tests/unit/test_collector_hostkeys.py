"""Host-key refusals worded by reason (collector.hostkeys): the KEXINIT reading and the table."""

from __future__ import annotations

import asyncio
import struct

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.hostkeys import (
    KexinitError,
    Trust,
    negotiation_reason,
    not_verifiable_reason,
    parse_kexinit,
    read_host_key_algs,
)
from collector.outcome import classify_connect_error

ED25519 = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()
CA = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def _namelist(names: list[str]) -> bytes:
    data = ",".join(names).encode()
    return struct.pack(">I", len(data)) + data


def _kexinit(host_key_algs: list[str]) -> bytes:
    payload = bytes([20]) + b"\0" * 16 + _namelist(["curve25519-sha256"])
    payload += _namelist(host_key_algs)
    return payload + b"".join(_namelist([]) for _ in range(8)) + b"\0" + b"\0\0\0\0"


@given(st.lists(st.from_regex(r"[a-z0-9@.\-]{1,40}", fullmatch=True), max_size=10))
def test_the_host_key_list_is_read_back(algs: list[str]) -> None:
    assert parse_kexinit(_kexinit(algs)) == tuple(algs)


@pytest.mark.parametrize("payload", [b"", b"\x15" + b"\0" * 40, _kexinit(["ssh-ed25519"])[:19]])
def test_anything_else_is_not_a_kexinit(payload: bytes) -> None:
    with pytest.raises(KexinitError):
        parse_kexinit(payload)


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.reader = asyncio.StreamReader()
        self.reader.feed_data(data)
        self.reader.feed_eof()
        self.written = b""
        self.closed = False

    async def readline(self) -> bytes:
        return await self.reader.readline()

    async def readexactly(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


async def test_the_first_packet_after_the_banner_is_read() -> None:
    payload = _kexinit(["ssh-ed25519", "rsa-sha2-512"])
    padding = 4
    packet = struct.pack(">IB", len(payload) + padding + 1, padding) + payload + b"\0" * padding
    stream = _Stream(b"a pre-banner line\r\nSSH-2.0-OpenSSH_9.2\r\n" + packet)
    assert await read_host_key_algs(stream, stream) == ("ssh-ed25519", "rsa-sha2-512")
    assert stream.written.startswith(b"SSH-2.0-")
    assert stream.closed


def _trust(*, keys: bool, ca: bool) -> Trust:
    return Trust((ED25519,) if keys else (), (CA,) if ca else (), "known_hosts /k")


@pytest.mark.parametrize(
    ("keys", "ca", "server", "reason"),
    [
        (False, True, ["ssh-ed25519"], "no CA signature: known_hosts /k trusts only"),
        (True, False, ["ecdsa-sha2-nistp256"], "no host-key type in common"),
        (True, True, ["ecdsa-sha2-nistp256"], "no host-key type in common"),
        (False, True, ["ssh-ed25519-cert-v01@openssh.com"], None),
        (True, False, ["rsa-sha2-512", "ssh-ed25519"], None),
        (False, False, ["ssh-ed25519"], None),
    ],
)
def test_negotiation_reasons(keys: bool, ca: bool, server: list[str], reason: str | None) -> None:
    found = negotiation_reason(_trust(keys=keys, ca=ca), server)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(reason)
        assert server[0] in found


@pytest.mark.parametrize(
    ("said", "keys", "ca", "reason"),
    [
        ("Host key is not trusted for host h", False, False, "unknown key: "),
        ("Host key is not trusted for host h", True, False, "changed key: "),
        ("Host key is not trusted for host h", False, True, "no CA signature: "),
        ("Host key is revoked for host h", True, False, "revoked key: "),
        ("Host CA key is not trusted for host h", False, True, "no trusted CA signature: "),
        ("Certificate principal mismatch for host h", False, True, "certificate not valid"),
    ],
)
def test_refusals_are_named(said: str, keys: bool, ca: bool, reason: str) -> None:
    message = not_verifiable_reason(asyncssh.HostKeyNotVerifiable(said), _trust(keys=keys, ca=ca))
    assert message.startswith(reason)
    assert message.endswith(f"({said})")


def test_a_named_refusal_is_still_a_mismatch() -> None:
    assert classify_connect_error(asyncssh.HostKeyNotVerifiable("no CA signature")) == (
        "host_key_mismatch"
    )
