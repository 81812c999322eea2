"""Signing requests: `ssh-keygen -Y sign -n fleetrun` over the request's canonical bytes.

Shelling out to ssh-keygen rather than signing in Python: it signs with whatever operators
already hold — a key file (asking for its passphrase), a key in ssh-agent (give the `.pub`
file: ssh-keygen finds the private half in the agent) or a hardware key (it asks for the
touch) — with no private key ever read by fleetrun.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

import msgspec

from fleetrun.cli.errors import CliError
from schemas import SIGNATURE_NAMESPACE, Request, as_document, canonical_bytes

# A hardware key waits for a touch; a passphrase prompt waits for typing.
SIGN_TIMEOUT_S: Final = 120.0


def sign_request(request: Request, key: Path) -> Request:
    """`request` with its `signature`: SSHSIG by `key` (a private key file, or a public key
    whose private half is in ssh-agent) over its canonical bytes."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise CliError("--sign-key: ssh-keygen (OpenSSH) is not installed")
    if not key.exists():
        raise CliError(f"--sign-key {key}: no such file")
    unsigned = msgspec.structs.replace(request, signature=msgspec.UNSET)
    message = canonical_bytes(as_document(unsigned))
    try:
        done = subprocess.run(
            [keygen, "-q", "-Y", "sign", "-n", SIGNATURE_NAMESPACE, "-f", str(key)],
            input=message,
            capture_output=True,
            timeout=SIGN_TIMEOUT_S,
            check=False,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        raise CliError(
            f"--sign-key {key}: ssh-keygen did not sign within {SIGN_TIMEOUT_S:g} s"
        ) from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CliError(
            f"--sign-key {key}: ssh-keygen could not sign: {why[-1] if why else done.returncode}"
        )
    return msgspec.structs.replace(request, signature=done.stdout.decode("ascii"))
