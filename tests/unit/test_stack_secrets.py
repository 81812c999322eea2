"""The stack's secrets files are for their owner only (issue 14 item 8): the env file holds the
PostgreSQL password, whatever mode an older stack left it with."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stack import Stack
from stack.config import StackConfig


def test_the_env_file_is_written_0600_even_over_an_old_0644_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEETRUN_STACK_DIR", str(tmp_path / "s"))
    cfg = StackConfig.from_env()
    cfg.state_dir.mkdir()
    cfg.env_file.write_text("FLEETRUN_PG_DSN=postgresql://old:secret@x/y\n")
    cfg.env_file.chmod(0o644)
    Stack(cfg).write_env()
    assert stat.S_IMODE(cfg.env_file.stat().st_mode) == 0o600
    assert "FLEETRUN_PG_DSN=" in cfg.env_file.read_text()
