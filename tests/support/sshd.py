"""An extra OpenSSH sshd for one test (e.g. with a CA-signed host certificate), and CA helpers.

Built from the stack's own sshd_config template (stack/templates/sshd_config), logging in the
stack's user with the stack's authorized keys, on a free port of a loopback address. It runs in
the foreground as our child process, so stopping it never touches anybody else's sshd.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from stack.env import StackEnv
from stack.sshd import SSHD, TEMPLATE
from tests.support.net import free_port

START_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class ExtraSshd:
    """A running extra sshd."""

    address: str
    port: int
    host_key: Path
    log: Path


def keygen(path: Path, comment: str = "fleetrun-test") -> Path:
    """A new ed25519 key pair at `path` (+ .pub); returns `path`."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        timeout=30,
        capture_output=True,
    )
    return path


def sign_host_key(ca: Path, host_key: Path, principals: Sequence[str]) -> Path:
    """Sign host_key.pub with the CA key as a host certificate; returns the -cert.pub path."""
    argv = ["ssh-keygen", "-q", "-s", str(ca), "-I", "fleetrun-test-host", "-h"]
    argv += ["-n", ",".join(principals), "-V", "-5m:+1h", str(host_key) + ".pub"]
    subprocess.run(
        argv,
        check=True,
        timeout=30,
        capture_output=True,
    )
    return Path(str(host_key) + "-cert.pub")


def public_key(path: Path) -> str:
    """`type base64` of a key's .pub file (no comment)."""
    return " ".join(Path(str(path) + ".pub").read_text().split()[:2])


def _banner(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def _stack_authorized_keys(env: StackEnv) -> str:
    config = Path(env["FLEETRUN_STACK_DIR"]) / "ssh" / env.ssh_hosts[0].name / "sshd_config"
    m = re.search(r"^AuthorizedKeysFile (.+)$", config.read_text(), re.MULTILINE)
    if m is None:
        raise RuntimeError(f"{config}: no AuthorizedKeysFile line")
    return m.group(1).strip()


@contextlib.contextmanager
def extra_sshd(
    workdir: Path,
    env: StackEnv,
    *,
    address: str = "127.0.0.1",
    host_key: Path | None = None,
    extra_config: Sequence[str] = (),
) -> Iterator[ExtraSshd]:
    """Run an sshd like the stack's hosts, plus `extra_config` lines, until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = host_key or keygen(workdir / "ssh_host_ed25519_key", "test-host-key")
    port = free_port(address)
    config = workdir / "sshd_config"
    log = workdir / "sshd.log"
    text = TEMPLATE.read_text().format(
        name="fleetrun-test",
        address=address,
        port=port,
        host_key=host_key,
        pid_file=workdir / "sshd.pid",
        authorized_keys=_stack_authorized_keys(env),
        user=env.ssh_user,
    )
    config.write_text(text + "".join(f"{line}\n" for line in extra_config))
    check = subprocess.run(
        [SSHD, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    if check.returncode != 0:
        raise RuntimeError(f"sshd -t: {check.stderr.strip()}")
    proc = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)])
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _banner(address, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"test sshd did not start; see {log}")
            time.sleep(0.05)
        yield ExtraSshd(address, port, host_key, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
