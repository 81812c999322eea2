"""No orphans: whenever fleetrun stops a command, its whole process tree is gone from the host.

Real OpenSSH hosts (the stack's, and a private sshd that refuses signal requests, as it does for
forced-command sessions). The hosts run locally as the stack's user, so `ps` here sees their
processes; each command carries a unique marker in its argv.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from collector.inventory import HostSpec
from collector.stop import Stop
from stack.env import StackEnv
from tests.support.sshd import ExtraSshd, extra_sshd, public_key
from tests.support.sshexec import (
    MakeExecutor,
    known_hosts_with,
    marker,
    request,
    stack_host,
    stack_settings,
    wait_gone,
)

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 15.0
# Three shapes of process tree: a background job, a pipeline, and a child that ignores TERM and
# does not hold the command's output (sshd's own signal cannot reach it once its parent died).
TREES = {
    "background": "sh -c 'sleep {m} & sleep {m}; wait'",
    "pipeline": "sleep {m} | cat",
    "term_proof": "(trap '' TERM; exec sleep {m} >/dev/null 2>&1) & sleep {m}",
}
SLEEPS = {"background": 2, "pipeline": 1, "term_proof": 2}  # `sleep {m}` processes in each


def ps(user: str, mark: str) -> list[str]:
    """`pid pgid args` of the user's processes whose command line holds `mark`."""
    out = subprocess.run(
        ["ps", "-u", user, "-o", "pid=,pgid=,args="],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if mark in line]


def sleeps(user: str, mark: str) -> list[str]:
    """The `sleep MARK` processes themselves (not the shells whose command line names them)."""
    return [p for p in ps(user, mark) if p.split(None, 2)[2] == f"sleep {mark}"]


async def wait_running(user: str, mark: str, count: int) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while len(sleeps(user, mark)) < count:  # noqa: ASYNC110 - polling the host's processes
            await asyncio.sleep(0.05)


async def no_leftovers(user: str, mark: str) -> None:
    """Wait until no process of `user` names `mark`; fail with what `ps` still shows."""
    try:
        async with asyncio.timeout(DEADLINE_S):
            while ps(user, mark):  # noqa: ASYNC110 - polling the host's processes
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"left on the host after {DEADLINE_S}s: {ps(user, mark)}") from None


@contextlib.contextmanager
def cleanup(user: str, mark: str) -> Iterator[None]:
    """Kill (by pid) whatever a failing test left behind."""
    try:
        yield
    finally:
        for line in ps(user, mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.mark.parametrize("tree", sorted(TREES))
async def test_timeout(stack_env: StackEnv, make_executor: MakeExecutor, tree: str) -> None:
    e = make_executor(stack_settings(stack_env))
    m = marker()
    with cleanup(stack_env.ssh_user, m):
        cmd = "echo started; " + TREES[tree].format(m=m)
        r = await e.run(stack_host(stack_env), request(cmd, timeout_s=1.5), collector="c")
        assert r.status == "timeout"
        assert r.error is not None
        assert "sent TERM to the process group" in r.error.message
        assert r.stdout_data == b"started\n"
        await no_leftovers(stack_env.ssh_user, m)
    assert e.pool_stats()["channels"] == 0


@pytest.mark.parametrize("tree", sorted(TREES))
async def test_cancellation_kills_before_the_cancellation_goes_on(
    stack_env: StackEnv, make_executor: MakeExecutor, tree: str
) -> None:
    e = make_executor(stack_settings(stack_env, ssh_kill_grace_s=1.0))
    m = marker()
    with cleanup(stack_env.ssh_user, m):
        task = asyncio.create_task(
            e.run(stack_host(stack_env), request(TREES[tree].format(m=m)), collector="c")
        )
        await wait_running(stack_env.ssh_user, m, SLEEPS[tree])
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 3 * 1.0 + 1.0  # bounded by the kill steps
        # Before CancelledError reached us, the command's processes that hold its output were
        # gone (sshd closed the channel); a TERM-proof one goes at the watchdog's KILL.
        held = [p for p in sleeps(stack_env.ssh_user, m) if tree != "term_proof"]
        assert held == []
        await no_leftovers(stack_env.ssh_user, m)
    assert e.pool_stats()["channels"] == 0


async def test_closing_the_pool_under_a_running_command(
    stack_env: StackEnv, make_executor: MakeExecutor
) -> None:
    e = make_executor(stack_settings(stack_env))
    m = marker()
    with cleanup(stack_env.ssh_user, m):
        task = asyncio.create_task(
            e.run(stack_host(stack_env), request(TREES["background"].format(m=m)), collector="c")
        )
        await wait_running(stack_env.ssh_user, m, 2)
        await e.close()
        r = await asyncio.wait_for(task, DEADLINE_S)
        assert r.status == "error"  # the connection ended under the command
        await no_leftovers(stack_env.ssh_user, m)


async def test_a_collector_killed_with_sigkill(stack_env: StackEnv) -> None:
    # Nothing in the collector runs after SIGKILL: only the host's side can clean up.
    script = textwrap.dedent(
        """
        import asyncio, sys
        from stack.env import StackEnv
        from tests.support.sshexec import executor, request, stack_host, stack_settings

        env = StackEnv.load()
        ex = executor(stack_settings(env))
        asyncio.run(ex.run(stack_host(env), request(sys.argv[1]), collector="doomed"))
        """
    )
    m = marker()
    with cleanup(stack_env.ssh_user, m):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, TREES["term_proof"].format(m=m), cwd=ROOT
        )
        try:
            await wait_running(stack_env.ssh_user, m, 2)
        finally:
            proc.kill()
            await proc.wait()
        await no_leftovers(stack_env.ssh_user, m)


async def test_stop_gives_a_killed_result(stack_env: StackEnv, make_executor: MakeExecutor) -> None:
    e = make_executor(stack_settings(stack_env))
    m = marker()
    stop = Stop()
    with cleanup(stack_env.ssh_user, m):
        cmd = "echo started; " + TREES["term_proof"].format(m=m)
        task = asyncio.create_task(
            e.run(stack_host(stack_env), request(cmd), collector="c", stop=stop)
        )
        await wait_running(stack_env.ssh_user, m, 2)
        stop.set("request cancelled by alice")
        r = await asyncio.wait_for(task, DEADLINE_S)
        assert (r.status, r.exit_status, r.exit_signal) == ("error", None, "TERM")
        assert r.error is not None
        assert r.error.type == "killed"
        assert r.error.message == (
            "killed: request cancelled by alice; sent TERM to the process group: the command ended"
        )
        assert r.stdout_data == b"started\n"
        await no_leftovers(stack_env.ssh_user, m)
    assert e.pool_stats()["channels"] == 0


async def test_stop_before_the_launch(stack_env: StackEnv, make_executor: MakeExecutor) -> None:
    e = make_executor(stack_settings(stack_env))
    m = marker()
    started: list[int] = []
    stop = Stop()
    stop.set("collector shutting down")

    async def on_start(host: HostSpec, attempt: int) -> None:
        started.append(attempt)

    r = await e.run(
        stack_host(stack_env), request(f"sleep {m}"), collector="c", on_start=on_start, stop=stop
    )
    assert (r.status, started) == ("skipped", [])
    assert r.error is not None
    assert (r.error.type, r.error.message) == (
        "not_started",
        "not started: collector shutting down",
    )
    assert ps(stack_env.ssh_user, m) == []


async def test_stop_set_by_on_start_kills_what_it_launched(
    stack_env: StackEnv, make_executor: MakeExecutor
) -> None:
    # on_start keeps its meaning (awaited right before the launch): a stop that arrives then
    # lets the launch happen, and stops the command at once.
    e = make_executor(stack_settings(stack_env))
    m = marker()
    stop = Stop()

    async def on_start(host: HostSpec, attempt: int) -> None:
        stop.set("request cancelled")

    with cleanup(stack_env.ssh_user, m):
        r = await e.run(
            stack_host(stack_env),
            request(TREES["background"].format(m=m)),
            collector="c",
            on_start=on_start,
            stop=stop,
        )
        assert r.status == "error"
        assert r.error is not None
        assert r.error.type == "killed"
        await no_leftovers(stack_env.ssh_user, m)


# --- a server that refuses SSH signals --------------------------------------------------------


@pytest.fixture
def forced(stack_env: StackEnv, tmp_path: Path) -> Iterator[tuple[ExtraSshd, HostSpec]]:
    """An sshd whose sessions are forced commands: it refuses every SSH `signal` request."""
    with extra_sshd(
        tmp_path / "sshd",
        stack_env,
        extra_config=['ForceCommand /bin/sh -c "$SSH_ORIGINAL_COMMAND"'],
    ) as sshd:
        known = known_hosts_with(
            stack_env,
            tmp_path / "known_hosts",
            f"[{sshd.address}]:{sshd.port} {public_key(sshd.host_key)}",
        )
        yield (
            sshd,
            HostSpec("forced", sshd.address, sshd.port, stack_env.ssh_user, known_hosts=known),
        )


async def test_the_forced_command_server_ignores_signals(
    stack_env: StackEnv, forced: tuple[ExtraSshd, HostSpec]
) -> None:
    """Why the watchdog: here a KILL signal leaves the command running."""
    sshd, host = forced
    m = marker()
    with cleanup(stack_env.ssh_user, m):
        async with asyncssh.connect(
            sshd.address,
            sshd.port,
            username=stack_env.ssh_user,
            client_keys=[str(stack_env.client_key)],
            known_hosts=str(host.known_hosts),
            config=[],
        ) as conn:
            process = await conn.create_process(f"exec sleep {m}", encoding=None)
            await wait_running(stack_env.ssh_user, m, 1)
            process.send_signal("KILL")
            with pytest.raises(AssertionError, match="still running"):
                await wait_gone(stack_env.ssh_user, f"sleep {m}", timeout_s=1.0)
            assert "refusing to send signal" in sshd.log.read_text()


@pytest.mark.parametrize("tree", sorted(TREES))
async def test_timeout_on_a_server_that_ignores_signals(
    stack_env: StackEnv, make_executor: MakeExecutor, forced: tuple[ExtraSshd, HostSpec], tree: str
) -> None:
    _, host = forced
    e = make_executor(stack_settings(stack_env))
    m = marker()
    with cleanup(stack_env.ssh_user, m):
        r = await e.run(host, request(TREES[tree].format(m=m), timeout_s=1.0), collector="c")
        assert r.status == "timeout"
        assert r.error is not None
        assert "sent TERM to the process group: the command ended" in r.error.message
        await no_leftovers(stack_env.ssh_user, m)
