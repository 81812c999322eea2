"""The running stack's secrets (issue 14 item 8): its env file (the PostgreSQL password) and
every private key it generated are readable by their owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from stack.env import StackEnv


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_env_file_and_private_keys_are_0600(stack_env: StackEnv) -> None:
    state = Path(stack_env["FLEETRUN_STACK_DIR"])
    secrets = [stack_env.path, stack_env.client_key]
    secrets += [state / "ssh" / h.name / "ssh_host_ed25519_key" for h in stack_env.ssh_hosts]
    assert {str(p): _mode(p) for p in secrets} == {str(p): 0o600 for p in secrets}
    assert "FLEETRUN_PG_DSN=" in stack_env.path.read_text()  # the file that holds the password
