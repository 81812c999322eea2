"""Process plumbing for the stack: pid files, deadlines, installing what is missing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StackError(Exception):
    """A service could not be installed, started or stopped; the message says what and where."""


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def fail(service: str, what: str, log: Path) -> StackError:
    """A StackError that names the service, what went wrong, and the log to read."""
    return StackError(f"{service}: {what}\n  log: {log}\n--- last lines ---\n{log_tail(log)}")


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    interval_s: float = 0.2,
) -> None:
    """Poll `check` until true; raise at the deadline or once `alive` says the process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"{what}: the process exited while starting")
        if time.monotonic() >= deadline:
            raise StackError(f"{what}: not ready after {timeout_s:.0f} s")
        time.sleep(interval_s)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def read_pid(pid_file: Path) -> int | None:
    """The pid in a pid file (first line), or None when there is none."""
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
        return int(first) if first else None
    except (OSError, ValueError):
        return None


def pid_alive(pid: int, marker: str) -> bool:
    """True if `pid` runs and its command line contains `marker` (guards against reused pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if marker not in cmdline:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie still has /proc entries; it is not running.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid from `pid_file` if that process is alive and is ours, else None."""
    pid = read_pid(pid_file)
    return pid if pid is not None and pid_alive(pid, marker) else None


def stop_pid(pid: int, marker: str, *, timeout_s: float = 30.0) -> None:
    """SIGTERM, a deadline, then SIGKILL; only while the pid is still the one we started."""
    if not pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid, marker), timeout_s=10, what=f"kill pid {pid}")


def run(
    args: Sequence[str],
    *,
    what: str,
    timeout_s: float = 120,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a command to completion (as `user` via runuser when given); raise with its output."""
    argv = list(args)
    if user is not None and user != _whoami():
        argv = ["runuser", "-u", user, "--", *argv]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"{what}: timed out after {timeout_s:.0f} s: {' '.join(argv)}") from None
    except FileNotFoundError:
        raise StackError(f"{what}: {argv[0]} is not installed") from None
    if done.returncode != 0:
        raise StackError(
            f"{what}: exit {done.returncode}: {' '.join(argv)}\n{done.stdout}{done.stderr}".rstrip()
        )
    return done.stdout


def _whoami() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages that are missing; a no-op when all are there."""
    missing = [p for p in packages if not _dpkg_installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(
            f"missing Debian packages: {' '.join(missing)}; install them "
            f"(sudo apt-get install -y {' '.join(missing)}) or run as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"stack: installing {' '.join(missing)} (apt-get)", flush=True)
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    try:
        run(cmd, what="apt-get install", timeout_s=900, env=env)
    except StackError:
        # A fresh machine may have stale or no package lists: refresh once and retry.
        run(["apt-get", "update", "-q"], what="apt-get update", timeout_s=600, env=env)
        run(cmd, what="apt-get install", timeout_s=900, env=env)


def _dpkg_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return True  # not Debian: assume the operator installed the tools themselves
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and "install ok installed" in done.stdout


def spawn(
    args: Sequence[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running server in its own session, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal that ran `up` must not kill it
        )


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    """SIGTERM `proc` and wait up to `timeout_s` for it to exit; past that, SIGKILL and reap it.

    A process that already exited (or vanishes meanwhile) is no error.
    """
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
