"""`stack up` is idempotent, `down` leaves none of its processes, a failed start fails loudly.

Runs a second, private stack (own state directory, ports and loopback addresses) so the shared
stack the other integration tests use is never disturbed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import Stack, StackConfig
from stack.proc import pid_alive


@pytest.fixture
def private_env() -> Iterator[dict[str, str]]:
    # Under /var/tmp, not pytest's 0700 tmp dir: the postgres user must reach its data directory.
    state = Path("/var/tmp") / f"fleetrun-lifecycle-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "FLEETRUN_STACK_DIR": str(state),
        "FLEETRUN_STACK_KAFKA_PORT": "29092",
        "FLEETRUN_STACK_KAFKA_CONTROLLER_PORT": "29093",
        "FLEETRUN_STACK_PG_PORT": "55433",
        "FLEETRUN_STACK_SSH_BASE_ADDRESS": "127.0.20.1",
    }
    yield env
    subprocess.run([sys.executable, "-m", "stack", "reset"], env=env, timeout=180, check=False)
    shutil.rmtree(state, ignore_errors=True)


def _stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _pids(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[int, str]]:
    """Every process of the private stack: name -> (pid, command-line marker)."""
    with monkeypatch.context() as m:
        for key, value in env.items():
            if key.startswith("FLEETRUN_STACK_"):
                m.setenv(key, value)
        stack = Stack(StackConfig.from_env())
    found: dict[str, tuple[int, str]] = {}
    if (pid := stack.kafka.pid()) is not None:
        found["kafka"] = (pid, str(stack.kafka.props))
    if (pid := stack.postgres.pid()) is not None:
        found["postgres"] = (pid, "postgres")
    for name, pid_ in stack.sshd.pids().items():
        if pid_ is not None:
            host = next(h for h in stack.sshd.hosts if h.name == name)
            found[name] = (pid_, str(host.config))
    return found


def test_up_twice_status_down(private_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    first = _stack(private_env, "up")
    assert first.returncode == 0, first.stderr
    started = _pids(private_env, monkeypatch)
    assert set(started) == {"kafka", "postgres", "demo1", "demo2", "demo3"}

    again = _stack(private_env, "up")
    assert again.returncode == 0, again.stderr
    assert _pids(private_env, monkeypatch) == started

    status = _stack(private_env, "status")
    assert status.returncode == 0
    assert "127.0.0.1:29092" in status.stdout
    assert "127.0.20.3:2222" in status.stdout

    down = _stack(private_env, "down")
    assert down.returncode == 0, down.stderr
    still = [name for name, (pid, marker) in started.items() if pid_alive(pid, marker)]
    assert still == []
    assert _stack(private_env, "status").returncode == 3


def test_a_service_that_cannot_start_fails_with_its_log(private_env: dict[str, str]) -> None:
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 55433))
    blocker.listen()
    try:
        done = _stack(private_env, "up")
    finally:
        blocker.close()
    assert done.returncode == 1
    assert "postgres" in done.stderr
    log = Path(private_env["FLEETRUN_STACK_DIR"]) / "postgres" / "postgres.log"
    assert f"log: {log}" in done.stderr
