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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

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


def sk_public_line(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey, app: bytes) -> str:
    """The `sk-…@openssh.com AAAA…` line of a security key played by a software key."""
    return f"{_sk_type(key)} {base64.b64encode(_sk_blob(key, app)).decode()}"


def sk_sshsig(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
    message: bytes,
    *,
    app: bytes = b"ssh:",
    flags: int = 0x01,
    counter: int = 7,
) -> str:
    """An armored SSHSIG as a security key makes it (PROTOCOL.u2f), by a software key."""
    ns = b"fleetrun"
    signed = b"SSHSIG" + _s(ns) + _s(b"") + _s(b"sha512") + _s(hashlib.sha512(message).digest())
    tail = bytes([flags]) + struct.pack(">I", counter)
    data = hashlib.sha256(app).digest() + tail + hashlib.sha256(signed).digest()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(data)
    else:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        raw = _s(_mpint(r)) + _s(_mpint(s))
    inner = _s(_sk_type(key).encode()) + _s(raw) + tail
    blob = _sk_blob(key, app)
    whole = b"SSHSIG" + struct.pack(">I", 1) + _s(blob) + _s(ns) + _s(b"") + _s(b"sha512")
    text = base64.b64encode(whole + _s(inner)).decode()
    return f"-----BEGIN SSH SIGNATURE-----\n{text}\n-----END SSH SIGNATURE-----"


def _sk_type(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "sk-ssh-ed25519@openssh.com"
    return "sk-ecdsa-sha2-nistp256@openssh.com"


def _sk_blob(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey, app: bytes) -> bytes:
    kind = _sk_type(key).encode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return _s(kind) + _s(raw) + _s(app)
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _s(kind) + _s(b"nistp256") + _s(point) + _s(app)


def _mpint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 8) // 8, "big")
