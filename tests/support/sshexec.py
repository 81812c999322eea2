"""Helpers for SSH executor tests: settings from the stack, requests, remote process checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any, Protocol

from collector.inventory import HostSpec, Inventory
from collector.metrics import CollectorMetrics
from collector.settings import CollectorSettings
from collector.ssh import SshExecutor
from schemas import Request, Target
from stack.env import StackEnv
from tests.support.settings import stack_ssh


def stack_settings(env: StackEnv, **overrides: Any) -> CollectorSettings:
    """Collector settings that reach the stack's sshd hosts (user, key, known_hosts, inventory)."""
    fields: dict[str, Any] = {
        "id": "test-collector",
        **stack_ssh(env),
        "ssh_kill_grace_s": 1.0,
        "retry_backoff_s": 0.2,
        "retry_backoff_max_s": 1.0,
    }
    return CollectorSettings(**(fields | overrides))


def executor(
    settings: CollectorSettings,
    inventory: Inventory | None = None,
    metrics: CollectorMetrics | None = None,
) -> SshExecutor:
    """An executor (with its own metrics registry unless given one)."""
    inventory = inventory or Inventory.load(settings.inventory, settings)
    return SshExecutor(settings, metrics or CollectorMetrics(), inventory)


class MakeExecutor(Protocol):
    """The `make_executor` fixture: `executor(...)` whose result is closed at teardown."""

    def __call__(
        self,
        settings: CollectorSettings,
        inventory: Inventory | None = None,
        metrics: CollectorMetrics | None = None,
    ) -> SshExecutor: ...


def request(command: str, **options: Any) -> Request:
    """A request for `command` (targets are irrelevant to the executor)."""
    options.setdefault("timeout_s", 20.0)
    options.setdefault("connect_timeout_s", 5.0)
    return Request.new(principal="tests", command=command, targets=["@demo"], **options)


def stack_host(env: StackEnv, name: str = "demo1") -> HostSpec:
    """A stack host resolved through the stack's inventory."""
    settings = stack_settings(env)
    return Inventory.load(settings.inventory, settings).resolve(Target(name))


def host_key_line(env: StackEnv, name: str = "demo1") -> str:
    """`type base64` of a stack host's key, from the stack's known_hosts."""
    for line in env.known_hosts.read_text().splitlines():
        if line.startswith(f"[{name}]:"):
            return " ".join(line.split()[1:3])
    raise LookupError(f"{name} is not in {env.known_hosts}")


def known_hosts_with(env: StackEnv, path: Path, *lines: str) -> Path:
    """The stack's known_hosts plus `lines`, written to `path`."""
    path.write_text(env.known_hosts.read_text() + "".join(f"{line}\n" for line in lines))
    return path


def marker() -> str:
    """A unique `sleep` argument: `sleep 600.<digits>` is findable with pgrep and nobody else's."""
    return f"600.{uuid.uuid4().int % 10**9:09d}"


def remote_pids(user: str, pattern: str) -> list[int]:
    """PIDs of the stack user's processes whose command line contains `pattern`."""
    proc = subprocess.run(
        ["pgrep", "-u", user, "-f", pattern],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return [int(p) for p in proc.stdout.split()]


async def wait_gone(user: str, pattern: str, timeout_s: float = 10.0) -> None:
    """Wait until no process of `user` matches `pattern`; AssertionError with the pids if not."""
    try:
        async with asyncio.timeout(timeout_s):
            while remote_pids(user, pattern):  # noqa: ASYNC110 - polling another machine's state
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(
            f"still running after {timeout_s}s: {remote_pids(user, pattern)} ({pattern})"
        ) from None


async def wait_running(user: str, pattern: str, timeout_s: float = 10.0) -> list[int]:
    """Wait until a process of `user` matches `pattern`; its pids."""
    async with asyncio.timeout(timeout_s):
        while not (pids := remote_pids(user, pattern)):  # noqa: ASYNC110 - remote state
            await asyncio.sleep(0.05)
    return pids


def kill_pids(pids: list[int]) -> None:
    """Clean up processes a test started on purpose (by pid, never by name)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def metric(metrics: CollectorMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample of the collector's metrics (0 when absent)."""
    value = metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)
