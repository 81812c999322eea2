"""Signing requests in tests without ssh-keygen: SSHSIG by an ed25519 key held in memory.

The unit tier has no toolchains, so this writes the PROTOCOL.sshsig format itself; the
integration tests sign with the real `ssh-keygen -Y sign`, and the committed test vectors
(schemas/examples/signing) were made by it.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import schemas
from schemas import Request


def _s(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def public_line(key: ed25519.Ed25519PrivateKey) -> str:
    """`ssh-ed25519 AAAA…` of the key."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def sshsig(key: ed25519.Ed25519PrivateKey, message: bytes, namespace: str = "fleetrun") -> str:
    """An armored SSHSIG of `message`, as `ssh-keygen -Y sign -n NAMESPACE` writes it."""
    blob = base64.b64decode(public_line(key).split()[1])
    ns = namespace.encode()
    signed = b"SSHSIG" + _s(ns) + _s(b"") + _s(b"sha512") + _s(hashlib.sha512(message).digest())
    inner = _s(b"ssh-ed25519") + _s(key.sign(signed))
    whole = b"SSHSIG" + struct.pack(">I", 1) + _s(blob) + _s(ns) + _s(b"") + _s(b"sha512")
    text = base64.b64encode(whole + _s(inner)).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "\n".join(["-----BEGIN SSH SIGNATURE-----", *lines, "-----END SSH SIGNATURE-----"])


def sign(request: Request, key: ed25519.Ed25519PrivateKey, namespace: str = "fleetrun") -> Request:
    """`request` with its signature over its canonical bytes."""
    unsigned = msgspec.structs.replace(request, signature=msgspec.UNSET)
    message = schemas.canonical_bytes(schemas.as_document(unsigned))
    return msgspec.structs.replace(request, signature=sshsig(key, message, namespace))


def write_allowed_signers(path: Path, entries: dict[str, ed25519.Ed25519PrivateKey]) -> Path:
    """An allowed-signers file: principals → key, namespaces="fleetrun"."""
    lines = [f'{who} namespaces="fleetrun" {public_line(k)}' for who, k in entries.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
