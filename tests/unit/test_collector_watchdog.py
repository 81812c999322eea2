"""collector.watchdog: the script's text (wrap/unwrap), and what it does under a real local sh.

The behaviour tests run the script the way sshd does — `$SHELL -c SCRIPT`, in a new session,
stdin a pipe the test holds like sshd holds the channel — and look at the processes with `ps`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.watchdog import STOP_LINE, quote, remote_grace_s, unwrap, wrap

SHELLS = [s for s in ("/bin/sh", "/bin/bash") if os.path.exists(s)]
DEADLINE_S = 10.0


@given(
    st.text(alphabet=st.characters(blacklist_characters="\x00")),
    st.floats(min_value=0.0, max_value=600.0),
)
def test_unwrap_returns_the_wrapped_command(command: str, grace_s: float) -> None:
    assert unwrap(wrap(command, grace_s)) == command


@pytest.mark.parametrize(
    "text",
    [
        "uname -a",
        "sim:hang",
        "",
        wrap("true", 2).replace("sleep 2", "sleep x"),
        wrap("true", 2)[:-1],
        wrap("a", 2).replace("'a'", "'a'b'"),  # a quote that `quote` would never write
        wrap("a", 2).replace("'a'", "a"),
    ],
)
def test_unwrap_rejects_anything_else(text: str) -> None:
    assert unwrap(text) is None


@pytest.mark.parametrize(
    ("grace_s", "remote"), [(0.0, 1), (0.2, 1), (1.0, 1), (1.5, 2), (2.0, 2), (30.0, 30)]
)
def test_remote_grace_is_whole_seconds_at_least_one(grace_s: float, remote: int) -> None:
    assert remote_grace_s(grace_s) == remote
    assert f"sleep {remote};" in wrap("true", grace_s)


def test_the_command_is_one_quoted_word_and_appears_once() -> None:
    command = "echo 'it''s' \"$HOME\" `id` $(id); exit 3"
    script = wrap(command, 1)
    assert script.count(quote(command)) == 1
    assert "\n" not in script  # `ps` shows it whole


# --- the script under a real shell ------------------------------------------------------------


@dataclass
class Ran:
    returncode: int
    stdout: bytes
    stderr: bytes


def _env(shell: str, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SHELL": shell, **extra}


async def _run_like_sshd(shell: str, script: str, *, watchdog: bool, **env: str) -> Ran:
    """`shell -c script` as sshd runs it (argv[0] the shell's name, a new session). With the
    watchdog, stdin is a pipe held open until the process exits, as sshd holds the channel's;
    without, stdin is at its end at once (as after the collector's EOF)."""
    proc = await asyncio.create_subprocess_exec(
        os.path.basename(shell),
        "-c",
        script,
        executable=shell,
        stdin=subprocess.PIPE if watchdog else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=_env(shell, **env),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    async with asyncio.timeout(DEADLINE_S):
        out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
        returncode = await proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()  # what sshd does once it reaped the command
    return Ran(returncode, out, err)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "command",
    [
        "echo out; echo err >&2; exit 3",
        "nosuchcommand_fleetrun",
        'echo $0; echo "it\'s"',
        "kill -TERM $$",
        'sh -c "kill -USR1 \\$\\$"',
        "cat; echo done",
        "sleep 0.1 & wait; echo waited",
        'printf %s "$FLEETRUN_X"',
        "echo 'unbalanced",
    ],
)
async def test_the_command_sees_and_shows_what_it_would_without_the_watchdog(
    shell: str, command: str
) -> None:
    wrapped = await _run_like_sshd(shell, wrap(command, 1), watchdog=True, FLEETRUN_X="a b'c")
    plain = await _run_like_sshd(shell, command, watchdog=False, FLEETRUN_X="a b'c")
    assert wrapped == plain


def _ps() -> list[tuple[int, int, str]]:
    """(pid, pgid, args) of every process, from `ps` as on a host."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    return [(int(r[0]), int(r[1]), r[2]) for r in rows if len(r) == 3]


def _group(pgid: int) -> list[str]:
    """The command lines of process group `pgid`."""
    return [args for _, group, args in _ps() if group == pgid]


def _marked(marker: str) -> list[tuple[int, int, str]]:
    return [row for row in _ps() if marker in row[2]]


def _sleeps(marker: str) -> int:
    return sum(args == f"sleep {marker}" for _, _, args in _marked(marker))


def _kill_marked(marker: str) -> None:
    for pid, _, _ in _marked(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _until(what: str, check: object, timeout_s: float = DEADLINE_S) -> None:
    assert callable(check)
    try:
        async with asyncio.timeout(timeout_s):
            while not check():  # noqa: ASYNC110 - polling other processes' state
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not {what} after {timeout_s}s") from None


@dataclass(frozen=True)
class Tree:
    """A command starting two `sleep {m}` processes; how to start it."""

    template: str
    new_session: bool = True  # sshd starts every command in its own session
    grace_s: float = 1.0


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    marker: str


@pytest.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    """A wrapped Tree (request.param) started like sshd would; its processes killed afterwards."""
    tree: Tree = request.param
    marker = f"600.{uuid.uuid4().int % 10**9:09d}"
    proc = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        wrap(tree.template.format(m=marker), tree.grace_s),
        executable="/bin/sh",
        stdin=subprocess.PIPE,
        start_new_session=tree.new_session,
        env=_env("/bin/sh"),
    )
    try:
        await _until("running", lambda: _sleeps(marker) >= 2)
        yield Running(proc, marker)
    finally:
        _kill_marked(marker)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


TREE = Tree("sleep {m} & sleep {m}; wait")


@pytest.mark.parametrize("running", [TREE], indirect=True)
async def test_stop_line_kills_the_whole_group(running: Running) -> None:
    assert running.proc.stdin is not None
    running.proc.stdin.write(STOP_LINE)
    async with asyncio.timeout(DEADLINE_S):
        assert await running.proc.wait() == -signal.SIGTERM
    await _until("gone", lambda: not _group(running.proc.pid))


@pytest.mark.parametrize("running", [TREE], indirect=True)
async def test_channel_gone_kills_the_whole_group(running: Running) -> None:
    assert running.proc.stdin is not None
    running.proc.stdin.close()  # as when sshd exits, or the channel closes
    async with asyncio.timeout(DEADLINE_S):
        assert await running.proc.wait() == -signal.SIGTERM
    await _until("gone", lambda: not _group(running.proc.pid))


TERM_PROOF = Tree("(trap '' TERM; exec sleep {m} >/dev/null 2>&1) & sleep {m}", grace_s=3)


@pytest.mark.parametrize("running", [TERM_PROOF], indirect=True)
async def test_a_term_proof_child_gets_kill_after_the_grace(running: Running) -> None:
    assert running.proc.stdin is not None
    running.proc.stdin.write(STOP_LINE)
    async with asyncio.timeout(DEADLINE_S):
        assert await running.proc.wait() == -signal.SIGTERM
    # Its parent died of TERM; the child ignored it (3 s of grace to see that)...
    assert _sleeps(running.marker) == 1
    await _until("gone", lambda: not _group(running.proc.pid))  # ...until the KILL


@pytest.mark.parametrize("running", [Tree(TREE.template, new_session=False)], indirect=True)
async def test_not_a_group_leader_becomes_one_through_setsid(running: Running) -> None:
    # As on a server that does not start commands in their own session: the test's own
    # process group must not be signalled, and the command's tree must still go.
    if shutil.which("setsid") is None:
        pytest.skip("no setsid(1) here: the watchdog then signals the command's process alone")
    assert os.getpgid(running.proc.pid) == running.proc.pid
    assert running.proc.stdin is not None
    running.proc.stdin.write(STOP_LINE)
    async with asyncio.timeout(DEADLINE_S):
        assert await running.proc.wait() == -signal.SIGTERM
    await _until("gone", lambda: not _group(running.proc.pid))


async def test_what_a_command_left_running_on_purpose_stays() -> None:
    marker = f"600.{uuid.uuid4().int % 10**9:09d}"
    command = f"sleep {marker} >/dev/null 2>&1 </dev/null & echo started"
    try:
        ran = await _run_like_sshd("/bin/sh", wrap(command, 1), watchdog=True)
        assert (ran.returncode, ran.stdout) == (0, b"started\n")
        # The watchdog saw its stdin end after the command had exited. Once it is gone (a
        # killing watchdog lives until its final KILL, which would take the sleep too), the
        # sleep must still be there.
        await _until("watchdog gone", lambda: len(_marked(marker)) == _sleeps(marker))
        assert _sleeps(marker) == 1
    finally:
        _kill_marked(marker)
