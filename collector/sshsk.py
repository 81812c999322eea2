"""Security-key (FIDO/U2F) SSH keys in signatures: sk-ssh-ed25519 and sk-ecdsa-sha2-nistp256.

`cryptography` loads neither key type, so the public key is read from its SSH blob here, and
the signature checked as OpenSSH's PROTOCOL.u2f says: the authenticator signs
SHA256(application) ‖ flags ‖ uint32 counter ‖ SHA256(message) (no extensions), ed25519 over
those bytes, or ECDSA P-256 with SHA-256. The user-presence flag must be set: a signature made
without touching the key is refused, as `ssh-keygen -Y verify` refuses it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

SK_ED25519: Final = "sk-ssh-ed25519@openssh.com"
SK_ECDSA: Final = "sk-ecdsa-sha2-nistp256@openssh.com"
USER_PRESENT: Final = 0x01
EXTENSIONS: Final = 0x80


@dataclass(frozen=True, slots=True)
class SkKey:
    """A security-key public key: the curve key and the FIDO application it is bound to."""

    algorithm: str
    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
    application: bytes


def load_sk_key(blob: bytes) -> SkKey:
    """The key an sk-* public key blob holds; ValueError when it is not one."""
    fields = _strings(blob)
    if fields and fields[0] == SK_ED25519.encode() and len(fields) == 3:
        return SkKey(SK_ED25519, ed25519.Ed25519PublicKey.from_public_bytes(fields[1]), fields[2])
    if fields and fields[0] == SK_ECDSA.encode() and len(fields) == 4 and fields[1] == b"nistp256":
        point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), fields[2])
        return SkKey(SK_ECDSA, point, fields[3])
    raise ValueError("not an sk-ssh-ed25519 or sk-ecdsa-sha2-nistp256 public key")


def check_sk(key: SkKey, algorithm: str, raw: bytes, message: bytes) -> None:
    """Verify a security-key signature (`raw`: the signature after its algorithm name) over
    `message`; raises ValueError or cryptography's InvalidSignature."""
    if algorithm != key.algorithm:
        raise ValueError(f"{algorithm} signature for an {key.algorithm} key")
    (length,) = struct.unpack(">I", raw[:4])
    signature, tail = raw[4 : 4 + length], raw[4 + length :]
    if len(tail) != 5:
        raise ValueError("security-key signature without its flags and counter")
    flags = tail[0]
    if flags & EXTENSIONS:
        raise ValueError("security-key signatures with extensions are not supported")
    if not flags & USER_PRESENT:
        raise ValueError("the security key was not touched (user presence flag not set)")
    data = hashlib.sha256(key.application).digest() + tail + hashlib.sha256(message).digest()
    if isinstance(key.key, ed25519.Ed25519PublicKey):
        key.key.verify(signature, data)
        return
    parts = _strings(signature)
    if len(parts) != 2:
        raise ValueError("ECDSA signature is not (r, s)")
    r, s = (int.from_bytes(p, "big", signed=True) for p in parts)
    key.key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))


def _strings(blob: bytes) -> list[bytes]:
    """A blob made only of SSH strings, split; [] when it is not one."""
    out, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            return []
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        if pos + 4 + length > len(blob):
            return []
        out.append(blob[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return out
