"""SSHSIG verification against allowed signers, on the test vectors `ssh-keygen -Y sign` made
(schemas/examples/signing) and on signatures made in memory (tests.support.signing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from collector.sshsig import AllowedSigners, SignatureError, SignersFileError, match_patterns
from tests.support.contract import EXAMPLES
from tests.support.signing import public_line, sk_public_line, sk_sshsig, sshsig

VECTORS = EXAMPLES / "signing"
MESSAGE = (VECTORS / "request.canonical").read_bytes()
# As `ssh-keygen -l` / `ssh-keygen -Y verify` print them for the vector keys.
FINGERPRINTS = {
    "ed25519": "SHA256:hkzR3kMRbX9mSejGwsj8vPM06/SCHUOoZTQGMVmRk6U",
    "ecdsa": "SHA256:aYeDsgwJ79kcj34Nldcf2zRIGE8cW16xF9MKd/YU21w",
    "rsa": "SHA256:/axzxBl8mbS0UCtXQfcYLVx2vEmw6gl5j7z3tj5J7aY",
}
SIGNERS = AllowedSigners.load(VECTORS / "allowed_signers")


@pytest.mark.parametrize("kind", sorted(FINGERPRINTS))
def test_signatures_made_by_ssh_keygen_verify(kind: str) -> None:
    armored = (VECTORS / f"request.{kind}.sig").read_text()
    assert SIGNERS.verify(armored, MESSAGE, "alice", "fleetrun") == FINGERPRINTS[kind]


@pytest.mark.parametrize("kind", sorted(FINGERPRINTS))
def test_one_changed_byte_fails(kind: str) -> None:
    armored = (VECTORS / f"request.{kind}.sig").read_text()
    altered = MESSAGE.replace(b'"name":"nginx"', b'"name":"nginy"')
    with pytest.raises(SignatureError, match="does not match the request"):
        SIGNERS.verify(armored, altered, "alice", "fleetrun")


@pytest.mark.parametrize(
    ("principal", "namespace", "problem"),
    [
        ("bob", "fleetrun", "not allowed to sign for principal 'bob'"),
        ("alice", "git", "namespace 'fleetrun', not 'git'"),
    ],
)
def test_principal_and_namespace_must_match(principal: str, namespace: str, problem: str) -> None:
    armored = (VECTORS / "request.ed25519.sig").read_text()
    with pytest.raises(SignatureError, match=problem):
        SIGNERS.verify(armored, MESSAGE, principal, namespace)


def _file(tmp_path: Path, *lines: str) -> AllowedSigners:
    path = tmp_path / "allowed_signers"
    path.write_text("\n".join(lines) + "\n")
    return AllowedSigners.load(path)


def test_a_key_not_in_the_file_is_refused(tmp_path: Path) -> None:
    signers = _file(tmp_path, f"alice {public_line(ed25519.Ed25519PrivateKey.generate())}")
    stranger = sshsig(ed25519.Ed25519PrivateKey.generate(), MESSAGE)
    with pytest.raises(SignatureError, match="is not in the allowed signers file"):
        signers.verify(stranger, MESSAGE, "alice", "fleetrun")


@pytest.mark.parametrize(
    ("options", "allowed"),
    [
        ("", True),
        ('namespaces="fleetrun"', True),
        ('namespaces="git,file"', False),
        ('namespaces="fleet*"', True),
        ('valid-before="20200101"', False),
        ('valid-after="29990101"', False),
        ('valid-after="20200101",namespaces="fleetrun"', True),
    ],
)
def test_line_options_are_honoured(tmp_path: Path, options: str, allowed: bool) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signers = _file(tmp_path, "# a comment", "", f"alice {options} {public_line(key)} laptop")
    armored = sshsig(key, MESSAGE)
    if allowed:
        assert signers.verify(armored, MESSAGE, "alice", "fleetrun").startswith("SHA256:")
    else:
        with pytest.raises(SignatureError, match="not allowed to sign for principal"):
            signers.verify(armored, MESSAGE, "alice", "fleetrun")


@pytest.mark.parametrize(
    ("value", "patterns", "matches"),
    [
        ("alice", ["alice"], True),
        ("ops-bob", ["ops-*"], True),
        ("ops-intern", ["ops-*", "!ops-intern"], False),
        ("carol", ["alice", "bob"], False),
        ("a1", ["a?"], True),
    ],
)
def test_principal_patterns_read_as_openssh_does(
    value: str, patterns: list[str], matches: bool
) -> None:
    assert match_patterns(value, patterns) is matches


def test_quoted_principal_lists(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signers = _file(tmp_path, f'"alice,bob" {public_line(key)}')
    assert signers.verify(sshsig(key, MESSAGE), MESSAGE, "bob", "fleetrun")


@pytest.mark.parametrize(
    "armored",
    [
        "not a signature",
        "-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----",
        "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----",
    ],
)
def test_garbage_is_refused_with_a_reason(armored: str) -> None:
    with pytest.raises(SignatureError, match="signature"):
        SIGNERS.verify(armored, MESSAGE, "alice", "fleetrun")


def test_a_bad_line_names_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(SignersFileError, match=r"allowed_signers:2: not an OpenSSH public key"):
        _file(tmp_path, "# ok", "alice ssh-ed25519 AAAAnotbase64!")


def _sk_keys() -> list[ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey]:
    return [ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())]


@pytest.mark.parametrize("key", _sk_keys(), ids=["sk-ed25519", "sk-ecdsa"])
def test_security_keys_verify_when_touched(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
) -> None:
    signers = _file(tmp_path, f"alice {sk_public_line(key, b'ssh:')}")
    assert signers.verify(sk_sshsig(key, MESSAGE), MESSAGE, "alice", "fleetrun")
    for armored, problem in [
        (sk_sshsig(key, MESSAGE, flags=0), "not touched"),
        (sk_sshsig(key, MESSAGE, app=b"ssh:other"), "is not in the allowed signers file"),
        (sk_sshsig(key, MESSAGE + b" "), "does not match"),
    ]:
        with pytest.raises(SignatureError, match=problem):
            signers.verify(armored, MESSAGE, "alice", "fleetrun")
