"""SSHSIG signatures (`ssh-keygen -Y sign`) verified against an OpenSSH allowed-signers file.

Written on `cryptography` rather than taken from the `sshsig` package: that package verifies
ed25519 and RSA only, and fleetrun's operators also sign with ECDSA keys (the default of many
hardware tokens and cloud KMSs). The format is small (OpenSSH's PROTOCOL.sshsig):

    blob   = "SSHSIG" uint32(1) string(public key) string(namespace) string(reserved)
             string(hash algorithm) string(signature)
    signed = "SSHSIG" string(namespace) string(reserved) string(hash algorithm)
             string(H(message))

The allowed-signers file is ssh-keygen's (ALLOWED SIGNERS in ssh-keygen(1)): one key per line,
`principals [options] keytype base64 [comment]`; principals are comma-separated patterns (`*`,
`?`, `!negation`); options `namespaces="…"`, `valid-after=`, `valid-before=` are honoured.
Security keys (sk-ssh-ed25519, sk-ecdsa-sha2-nistp256: hardware tokens) are checked by
collector.sshsk. `cert-authority` lines (signatures by certificates) are skipped with a warning.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import logging
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from collector.sshsk import SkKey, check_sk, load_sk_key

log = logging.getLogger("fleetrun.collector")

_MAGIC: Final = b"SSHSIG"
_BEGIN: Final = "-----BEGIN SSH SIGNATURE-----"
_END: Final = "-----END SSH SIGNATURE-----"
_HASHES: Final = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_CURVE_HASH: Final[dict[str, hashes.HashAlgorithm]] = {
    "nistp256": hashes.SHA256(),
    "nistp384": hashes.SHA384(),
    "nistp521": hashes.SHA512(),
}
_RSA_HASH: Final[dict[str, hashes.HashAlgorithm]] = {
    "rsa-sha2-256": hashes.SHA256(),
    "rsa-sha2-512": hashes.SHA512(),
}
_OPTION: Final = re.compile(r'(cert-authority|namespaces="[^"]*"|valid-after="?[0-9Z]+"?|'
                            r'valid-before="?[0-9Z]+"?)(,|(?=\s))', re.I)  # fmt: skip

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey | SkKey


class SignatureError(ValueError):
    """A signature that does not verify, with why in words an operator can act on."""


class SignersFileError(ValueError):
    """The allowed-signers file cannot be used (says which line and why)."""


def fingerprint(key_blob: bytes) -> str:
    """The key's fingerprint as `ssh-keygen -l` prints it: SHA256:<base64, unpadded>."""
    digest = base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed armored SSHSIG: who claims to have signed, for what namespace, and how."""

    key_blob: bytes
    namespace: str
    reserved: bytes
    hash_algorithm: str
    algorithm: str
    raw_signature: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key_blob)

    @classmethod
    def parse(cls, armored: str) -> Signature:
        """Read an armored SSHSIG; SignatureError when it is not one."""
        text = armored.strip()
        if not (text.startswith(_BEGIN) and text.endswith(_END)):
            raise SignatureError(f"signature is not an armored SSH signature ({_BEGIN} … {_END})")
        body = "".join(text[len(_BEGIN) : -len(_END)].split())
        try:
            blob = base64.b64decode(body, validate=True)
        except ValueError:
            raise SignatureError("signature is not valid base64 inside its armor") from None
        reader = _Reader(blob)
        if reader.take(6) != _MAGIC or reader.uint32() != 1:
            raise SignatureError("signature is not an SSHSIG version 1 blob")
        key_blob = reader.string()
        namespace = reader.string().decode("utf-8", "replace")
        reserved = reader.string()
        hash_algorithm = reader.string().decode("ascii", "replace")
        inner = _Reader(reader.string())
        reader.end()
        algorithm = inner.string().decode("ascii", "replace")
        raw = inner.rest()
        return cls(key_blob, namespace, reserved, hash_algorithm, algorithm, raw)

    def signed_data(self, message: bytes) -> bytes:
        """What the key signed for `message` (PROTOCOL.sshsig)."""
        digest = _HASHES[self.hash_algorithm](message).digest()
        return (
            _MAGIC
            + _string(self.namespace.encode())
            + _string(self.reserved)
            + _string(self.hash_algorithm.encode())
            + _string(digest)
        )


@dataclass(frozen=True, slots=True)
class AllowedSigner:
    """One line of the allowed-signers file."""

    principals: tuple[str, ...]  # patterns, `!` negations included
    namespaces: tuple[str, ...] | None
    valid_after: datetime | None
    valid_before: datetime | None
    key_blob: bytes
    key: PublicKey
    line: int

    def allows(self, principal: str, namespace: str, now: datetime) -> bool:
        """Whether this line lets its key sign as `principal` in `namespace` at `now`."""
        if self.valid_after is not None and now < self.valid_after:
            return False
        if self.valid_before is not None and now >= self.valid_before:
            return False
        if self.namespaces is not None and not match_patterns(namespace, self.namespaces):
            return False
        return match_patterns(principal, self.principals)


def match_patterns(value: str, patterns: Iterable[str]) -> bool:
    """OpenSSH's match_pattern_list: a negated match refuses, else any positive match."""
    matched = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if fnmatch.fnmatchcase(value, pattern[1:]):
                return False
        elif fnmatch.fnmatchcase(value, pattern):
            matched = True
    return matched


class AllowedSigners:
    """The allowed-signers file, by key: which principals each key may sign as."""

    def __init__(self, signers: Iterable[AllowedSigner], path: Path | None = None) -> None:
        self.path = path
        self.by_key: dict[bytes, list[AllowedSigner]] = {}
        for signer in signers:
            self.by_key.setdefault(signer.key_blob, []).append(signer)

    @classmethod
    def load(cls, path: Path) -> AllowedSigners:
        """Read `path`; SignersFileError naming the line when one cannot be read."""
        signers = [
            s
            for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
            if (s := _parse_line(line, number, path)) is not None
        ]
        return cls(signers, path)

    def verify(
        self, armored: str | Signature, message: bytes, principal: str, namespace: str
    ) -> str:
        """Verify `armored` (or an already parsed signature) over `message` for `principal`;
        returns the key's fingerprint.

        SignatureError says what failed: not a signature, wrong namespace, a key not in the
        file, a signature that does not match the message, or a key not allowed for
        `principal`."""
        sig = armored if isinstance(armored, Signature) else Signature.parse(armored)
        fp = sig.fingerprint
        if sig.namespace != namespace:
            raise SignatureError(f"signature is for namespace {sig.namespace!r}, not {namespace!r}")
        if sig.hash_algorithm not in _HASHES:
            raise SignatureError(f"signature hash {sig.hash_algorithm!r} is not sha256 or sha512")
        entries = self.by_key.get(sig.key_blob)
        if not entries:
            raise SignatureError(f"key {fp} is not in the allowed signers file")
        try:
            _check(entries[0].key, sig, sig.signed_data(message))
        except Exception as exc:  # whatever fails to verify refuses the request
            raise SignatureError(
                f"signature by key {fp} does not match the request (a field was changed after "
                f"signing, or it was signed over other bytes){_detail(exc)}"
            ) from None
        now = datetime.now(UTC)
        if not any(entry.allows(principal, namespace, now) for entry in entries):
            raise SignatureError(
                f"key {fp} is not allowed to sign for principal {principal!r} "
                "(allowed signers: principals, namespaces, validity)"
            )
        return fp


def _detail(exc: Exception) -> str:
    return f": {exc}" if str(exc) else ""


def _check(key: PublicKey, sig: Signature, data: bytes) -> None:
    algorithm, raw = sig.algorithm, sig.raw_signature
    if isinstance(key, SkKey):
        check_sk(key, algorithm, raw, data)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        if algorithm != "ssh-ed25519":
            raise ValueError(f"{algorithm} signature for an ed25519 key")
        key.verify(_Reader(raw).only_string(), data)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = {256: "nistp256", 384: "nistp384", 521: "nistp521"}.get(key.curve.key_size, "")
        if algorithm != f"ecdsa-sha2-{curve}":
            raise ValueError(f"{algorithm} signature for an ecdsa-sha2-{curve} key")
        inner = _Reader(_Reader(raw).only_string())
        r, s = inner.mpint(), inner.mpint()
        inner.end()
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_CURVE_HASH[curve]))
    else:
        if algorithm not in _RSA_HASH:  # ssh-rsa means SHA-1, which OpenSSH refuses too
            raise ValueError(
                f"RSA signatures must be rsa-sha2-256 or rsa-sha2-512, not {algorithm}"
            )
        key.verify(_Reader(raw).only_string(), data, padding.PKCS1v15(), _RSA_HASH[algorithm])


def _parse_line(line: str, number: int, path: Path) -> AllowedSigner | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    where = f"{path}:{number}"
    if text.startswith('"'):
        principals, _, rest = text[1:].partition('"')
    else:
        principals, _, rest = text.partition(" ")
    rest = rest.lstrip()
    options: dict[str, str] = {}
    while (m := _OPTION.match(rest)) is not None:
        name, _, value = m.group(1).partition("=")
        options[name.lower()] = value.strip('"')
        rest = rest[m.end() :].lstrip(",") if m.group(2) == "," else rest[m.end() :].lstrip()
    if "cert-authority" in options:
        log.warning("allowed signers: cert-authority lines are not supported; line skipped",
                    extra={"line": where})  # fmt: skip
        return None
    parts = rest.split()
    if len(parts) < 2 or not principals:
        raise SignersFileError(f"{where}: expected 'principals [options] keytype base64-key'")
    key_type, key_b64 = parts[0], parts[1]
    try:
        key_blob = base64.b64decode(key_b64, validate=True)
        key: Any = (
            load_sk_key(key_blob)
            if key_type.startswith("sk-")
            else serialization.load_ssh_public_key(f"{key_type} {key_b64}".encode())
        )
    except UnsupportedAlgorithm:
        log.warning("allowed signers: key type not supported; line skipped",
                    extra={"line": where, "key_type": key_type})  # fmt: skip
        return None
    except ValueError as exc:
        raise SignersFileError(f"{where}: not an OpenSSH public key ({exc})") from None
    if not isinstance(key, PublicKey):
        log.warning("allowed signers: key type not supported; line skipped",
                    extra={"line": where, "key_type": key_type})  # fmt: skip
        return None
    namespaces = options.get("namespaces")
    return AllowedSigner(
        principals=tuple(p for p in principals.split(",") if p),
        namespaces=None if namespaces is None else tuple(namespaces.split(",")),
        valid_after=_when(options.get("valid-after"), where),
        valid_before=_when(options.get("valid-before"), where),
        key_blob=key_blob,
        key=key,
        line=number,
    )


def _when(value: str | None, where: str) -> datetime | None:
    """ssh-keygen's YYYYMMDD[HHMM[SS]][Z] (local time unless Z; the collector reads UTC)."""
    if value is None:
        return None
    digits = value.rstrip("Zz")
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    try:
        return datetime.strptime(digits, formats[len(digits)]).replace(tzinfo=UTC)
    except (KeyError, ValueError):
        raise SignersFileError(f"{where}: {value!r} is not YYYYMMDD[HHMM[SS]][Z]") from None


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Reader:
    """SSH wire format (RFC 4251 §5): uint32, length-prefixed strings, mpints."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SignatureError("signature blob is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.uint32())

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)

    def only_string(self) -> bytes:
        value = self.string()
        self.end()
        return value

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SignatureError("signature blob has trailing bytes")
