"""`fleetrun run --follow` and `fleetrun tail` as a user runs them, against a real collector,
Kafka and the stack's sshd hosts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from fleetrun.cli.errors import EXIT_OK
from fleetrun.cli.settings import CliSettings
from stack.env import StackEnv
from tests.support.cli import run_fleetrun
from tests.support.collector import collector_settings, running_collector
from tests.support.kafka import Topics
from tests.support.settings import process_env

# Two lines 0.5 s apart, then one that tries to retitle the terminal (OSC 0 ... BEL).
CHATTY = r"for i in 1 2; do echo line$i; sleep 0.5; done; printf '\033]0;pwned\007evil\n'"


@pytest.fixture
async def env(stack_env: StackEnv, topics: Topics) -> AsyncIterator[dict[str, str]]:
    """A collector on this test's topics, and the CLI's environment aimed at them."""
    cli_env = process_env(
        CliSettings, stack_env, {"topic_prefix": topics.prefix, "inventory": stack_env.inventory}
    )
    async with running_collector(collector_settings(topics.prefix)):
        yield cli_env


async def _fleetrun(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run_fleetrun(env, *args, timeout_s=60)


def _assert_lines(out: str) -> None:
    # The live part only: the grouped report after it is issue 14's (fleetrun/cli/grouping.py).
    out = out.split("\n---", 1)[0] + "\n"
    for host in ("demo1", "demo2", "demo3"):
        assert out.index(f"{host}: line1\n") < out.index(f"{host}: line2\n")
        assert f"{host}: \\x1b]0;pwned\\x07evil\n" in out
    assert "\x1b" not in out  # escaped, and no colour when not a terminal


async def test_run_follow_prints_host_lines_then_the_grouped_report(
    env: dict[str, str],
) -> None:
    code, out, err = await _fleetrun(env, "run", CHATTY, "-t", "@demo", "--follow")
    assert code == EXIT_OK, err
    _assert_lines(out)
    # Then the report, as with --wait: one group for the three hosts.
    assert out.index("demo3: line2") < out.index("demo[1-3] (3) ok")
    assert "3 hosts: 3 ok" in out


async def test_tail_follows_a_request_from_another_process(env: dict[str, str]) -> None:
    rid = str(uuid.uuid4())
    run = asyncio.create_task(
        _fleetrun(env, "run", CHATTY, "-t", "@demo", "--follow", "--request-id", rid)
    )
    code, out, err = await _fleetrun(env, "tail", rid)
    assert code == EXIT_OK, err
    _assert_lines(out)
    assert "completed: ok=3" in err
    run_code, _, run_err = await run
    assert run_code == EXIT_OK, run_err
