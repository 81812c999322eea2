"""The CLI points at the local stack's settings when it cannot reach a server, and only says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetrun.cli.errors import local_stack_env_file, local_stack_hint
from stack.config import StackConfig


@pytest.fixture
def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FLEETRUN_ENV_FILE", raising=False)
    monkeypatch.setenv("FLEETRUN_STACK_DIR", str(tmp_path))
    return tmp_path


def test_no_hint_when_the_stack_never_ran_here(stack_dir: Path) -> None:
    assert local_stack_hint() == ""


def test_the_hint_names_the_file_the_stack_writes(stack_dir: Path) -> None:
    env_file = StackConfig.from_env().env_file  # the stack's own idea of where it writes
    env_file.write_text("FLEETRUN_KAFKA_BOOTSTRAP=127.0.0.1:1\n")
    assert local_stack_hint() == f"; for the local stack: export FLEETRUN_ENV_FILE={env_file}"


def test_no_hint_once_a_settings_file_is_named(
    stack_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (stack_dir / "fleetrun.env").write_text("")
    monkeypatch.setenv("FLEETRUN_ENV_FILE", "/etc/fleetrun/prod.env")
    assert local_stack_hint() == ""


def test_without_a_stack_dir_both_agree_on_the_default(
    stack_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FLEETRUN_STACK_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert local_stack_env_file() == StackConfig.from_env().env_file
