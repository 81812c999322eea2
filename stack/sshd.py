"""OpenSSH test hosts: one sshd process per host, each with its own host key, on loopback."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from stack.config import SSH_HOST_NAMES, StackConfig
from stack.proc import (
    StackError,
    apt_install,
    fail,
    run,
    running_pid,
    stop_pid,
    wait_until,
)

SSHD = "/usr/sbin/sshd"
TEMPLATE = Path(__file__).parent / "templates" / "sshd_config"
START_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class SshHost:
    """One test host: its name, where it listens, and its files."""

    name: str
    address: str
    port: int
    home: Path

    @property
    def config(self) -> Path:
        return self.home / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.home / "ssh_host_ed25519_key"

    @property
    def pid_file(self) -> Path:
        return self.home / "sshd.pid"

    @property
    def log(self) -> Path:
        return self.home / "sshd.log"


def _banner(address: str, port: int) -> bool:
    """True once the server speaks SSH (not merely accepts TCP)."""
    try:
        with socket.create_connection((address, port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


class SshHosts:
    """The stack's sshd test hosts, their client key and the known_hosts file for the collector."""

    name = "sshd"

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "ssh"
        self.client_key = self.home / "id_ed25519"
        self.known_hosts = self.home / "known_hosts"
        self.hosts = [
            SshHost(name, cfg.ssh_address(i), cfg.ssh_port, self.home / name)
            for i, name in enumerate(SSH_HOST_NAMES)
        ]

    def install(self) -> None:
        if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
            apt_install(["openssh-server", "openssh-client"])

    def pids(self) -> dict[str, int | None]:
        return {h.name: running_pid(h.pid_file, str(h.config)) for h in self.hosts}

    def up(self) -> None:
        """Create the user and keys once, then start every host that is not running."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o755)
        self._keygen(self.client_key, f"fleetrun-collector@{socket.gethostname()}")
        authorized = self._ensure_user()
        if os.geteuid() == 0:
            # sshd's privilege separation directory; Debian creates it only from its init script.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        running = self.pids()
        for host in self.hosts:
            host.home.mkdir(parents=True, exist_ok=True)
            self._keygen(host.host_key, f"{host.name}-host-key")
            host.config.write_text(
                TEMPLATE.read_text().format(
                    name=host.name,
                    address=host.address,
                    port=host.port,
                    host_key=host.host_key,
                    pid_file=host.pid_file,
                    authorized_keys=authorized,
                    user=self.cfg.ssh_user,
                )
            )
            if running[host.name] is None:
                self._start(host)
        self._write_known_hosts()

    def down(self) -> None:
        for host in self.hosts:
            pid = running_pid(host.pid_file, str(host.config))
            if pid is not None:
                stop_pid(pid, str(host.config), timeout_s=10)
            host.pid_file.unlink(missing_ok=True)

    def status(self) -> tuple[bool, str]:
        pids = self.pids()
        parts = [
            f"{h.name}={h.address}:{h.port}" + (f" pid {pids[h.name]}" if pids[h.name] else " down")
            for h in self.hosts
        ]
        return all(pids.values()), ", ".join(parts)

    def _keygen(self, path: Path, comment: str) -> None:
        if path.exists():
            return
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            what=f"sshd: generating {path.name}",
        )

    def _ensure_user(self) -> str:
        """The login user of the test hosts, with our client key authorized; returns the path."""
        pub = (self.client_key.with_suffix(".pub")).read_text().strip()
        if os.geteuid() != 0:
            authorized = self.home / "authorized_keys"
            authorized.write_text(pub + "\n")
            authorized.chmod(0o600)
            return str(authorized)
        user = self.cfg.ssh_user
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            run(["useradd", "--create-home", "--shell", "/bin/sh", user], what="sshd: useradd")
            entry = pwd.getpwnam(user)
        # With UsePAM off, sshd refuses accounts whose password field is locked ('!'); '*' means
        # "no password login" without locking the account for keys.
        run(["usermod", "-p", "*", user], what="sshd: unlocking key login")
        ssh_dir = Path(entry.pw_dir) / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        lines = authorized.read_text().splitlines() if authorized.exists() else []
        if pub not in lines:
            lines.append(pub)
            authorized.write_text("\n".join(lines) + "\n")
        for path in (ssh_dir, authorized):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        authorized.chmod(0o600)
        return str(authorized)

    def _start(self, host: SshHost) -> None:
        if _banner(host.address, host.port):
            raise StackError(
                f"sshd {host.name}: {host.address}:{host.port} is already served by another "
                "process; set FLEETRUN_STACK_SSH_PORT or FLEETRUN_STACK_SSH_BASE_ADDRESS"
            )
        try:
            run([SSHD, "-t", "-f", str(host.config)], what=f"sshd {host.name}: config check")
            # sshd daemonizes and writes its own pid file.
            run([SSHD, "-f", str(host.config), "-E", str(host.log)], what=f"sshd {host.name}")
            wait_until(
                lambda: _banner(host.address, host.port),
                timeout_s=START_TIMEOUT_S,
                what=f"sshd {host.name}",
            )
        except StackError as exc:
            raise fail(f"sshd {host.name}", str(exc), host.log) from None

    def _write_known_hosts(self) -> None:
        lines = []
        for host in self.hosts:
            key_type, key = host.host_key.with_suffix(".pub").read_text().split()[:2]
            # Listed under both the inventory name and the address, so either lookup verifies.
            lines.append(f"[{host.name}]:{host.port},[{host.address}]:{host.port} {key_type} {key}")
        self.known_hosts.write_text("\n".join(lines) + "\n")
