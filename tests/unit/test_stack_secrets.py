"""The stack's secrets files are for their owner only (issue 14 item 8): the env file holds the
PostgreSQL password, whatever mode an older stack left it with."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stack import Stack
from stack.config import PG_READER_USER, StackConfig


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


def test_the_cli_and_the_console_read_as_the_read_only_login(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEETRUN_STACK_DIR", str(tmp_path / "s"))
    cfg = StackConfig.from_env()
    cfg.state_dir.mkdir()
    Stack(cfg).write_env()
    lines = dict(
        line.split("=", 1) for line in cfg.env_file.read_text().splitlines() if "=" in line
    )
    reader = cfg.pg_dsn_as(PG_READER_USER)
    assert lines["FLEETRUN_CLI_PG_DSN"] == lines["FLEETRUN_WEB_PG_DSN"] == reader
    assert lines["FLEETRUN_PG_DSN"] != reader  # the owner's, for tools that migrate
