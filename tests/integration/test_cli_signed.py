"""`fleetrun run --sign-key` and `--template` against a collector with a policy, on the real
stack: a signed template request runs, rendered; an injected parameter and an unsigned request
exit 3 with the collector's reason and run nowhere."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetrun.cli.errors import EXIT_OK, EXIT_REJECTED
from fleetrun.cli.settings import CliSettings
from stack.env import StackEnv
from tests.support.cli import run_fleetrun
from tests.support.collector import collector_settings, running_collector, ssh_all
from tests.support.kafka import Topics
from tests.support.settings import process_env

POLICY = """
[templates.restart_service]
command = "echo restarting {name}"
params.name = { one_of = ["nginx", "haproxy"] }

[[rules]]
name = "tests-demo"
principals = ["tests"]
targets = ["@demo"]
commands = ["uptime"]
templates = ["restart_service"]
"""


@dataclass(frozen=True, slots=True)
class SignedCli:
    env: dict[str, str]
    key: Path

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        return await run_fleetrun(self.env, *args, timeout_s=90)


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
    )
    return path


@pytest.fixture
async def cli(stack_env: StackEnv, topics: Topics, tmp_path: Path) -> AsyncIterator[SignedCli]:
    key = _keygen(tmp_path / "id_ed25519")
    kind, blob = (tmp_path / "id_ed25519.pub").read_text().split()[:2]
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'tests namespaces="fleetrun" {kind} {blob}\n')
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    settings = collector_settings(topics.prefix, allowed_signers=signers, policy=policy)
    env = process_env(CliSettings, stack_env, {"topic_prefix": topics.prefix, "principal": "tests"})
    async with running_collector(settings):
        yield SignedCli(env, key)


async def test_signed_template_runs_and_injection_runs_nowhere(
    cli: SignedCli, stack_env: StackEnv, remote_tag: str
) -> None:
    signed = ("--sign-key", str(cli.key), "-t", "@demo", "--wait")
    code, out, err = await cli("run", "--template", "restart_service", "-p", "name=nginx", *signed)
    assert code == EXIT_OK, err
    assert "demo[1-3] (3) ok" in out
    assert "restarting nginx" in out

    marker = f"/tmp/fleetrun-inject-{remote_tag}-x"
    code, _, err = await cli(
        "run", "--template", "restart_service", "-p", f"name=nginx; touch {marker}", *signed
    )
    assert code == EXIT_REJECTED, err
    assert "denied by policy rule 'tests-demo'" in err
    assert "is not one of nginx|haproxy" in err
    assert set((await ssh_all(stack_env, f"test -e {marker} && echo yes || echo no")).values()) == {
        "no\n"
    }

    code, _, err = await cli("run", "uptime", "-t", "@demo", "--wait")
    assert code == EXIT_REJECTED, err
    assert "unsigned request" in err
