"""Host keys (derived from the seed, one per host) and the fleet's single client key.

Host keys are ed25519 keys derived from (seed, host name), so a restarted fleet presents the
same keys and clients holding the old known_hosts keep verifying. That makes them predictable
to anyone who knows the seed: fine for a loopback-only simulator, never for anything else.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import asyncssh

# PKCS#8 DER header of an ed25519 private key; the 32-byte seed follows it (RFC 8410).
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


def derive_host_key(seed: int, name: str, variant: str = "served") -> asyncssh.SSHKey:
    """The ed25519 host key of `name`; `variant` yields an unrelated key for the same host."""
    secret = hashlib.sha256(f"simfleet-hostkey/{seed}/{name}/{variant}".encode()).digest()
    return asyncssh.import_private_key(_ED25519_PKCS8_PREFIX + secret)


def load_or_create_client_key(path: Path) -> asyncssh.SSHKey:
    """Load the client key at `path`, generating it (0600, plus `.pub`) when missing."""
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="simfleet-client")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    tmp.replace(path)
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    return key


def known_hosts_line(address: str, port: int, key: asyncssh.SSHKey) -> str:
    """One known_hosts line: `[127.1.0.5]:2200 ssh-ed25519 AAAA...` (bare address on port 22)."""
    pattern = address if port == 22 else f"[{address}]:{port}"
    public = key.export_public_key("openssh").decode().split()
    return f"{pattern} {public[0]} {public[1]}"
