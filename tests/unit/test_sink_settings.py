"""The sink's settings and its migration files (no database needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleetrun.settings import SettingsError, load, render
from sink.migrate import load_migrations
from sink.settings import SinkSettings

ROOT = Path(__file__).parents[2]


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return {"FLEETRUN_ENV_FILE": str(env_file), **values}


def test_environment_names_and_defaults(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        FLEETRUN_KAFKA_BOOTSTRAP="127.0.0.1:1",
        FLEETRUN_TOPIC_PREFIX="t.",
        FLEETRUN_PG_DSN="postgresql://u:s3cret@h:5/db",
        FLEETRUN_BATCH_MAX_ROWS="1_000",
        FLEETRUN_LINGER_MS="20",
    )
    s = load(SinkSettings, section="sink", environ=env)
    assert (s.kafka_bootstrap, s.topic_prefix, s.batch_max_rows, s.linger_ms) == (
        "127.0.0.1:1",
        "t.",
        1000,
        20.0,
    )
    assert (s.results_topic, s.status_topic, s.dlq_topic) == ("t.results", "t.status", "t.dlq")
    assert s.group_id == "fleetrun-sink"
    assert s.ops_port == 9465
    assert s.name  # hostname-pid by default
    assert "s3cret" not in repr(s)
    assert "s3cret" not in render(s)


def test_toml_section(tmp_path: Path) -> None:
    config = tmp_path / "fleetrun.toml"
    config.write_text('[sink]\nretention_days = 7\npartition_interval = "weekly"\n')
    s = load(SinkSettings, section="sink", environ=_env(tmp_path, FLEETRUN_CONFIG=str(config)))
    assert (s.retention_days, s.partition_interval) == (7, "weekly")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"FLEETRUN_PARTITION_INTERVAL": "hourly"}, "daily, weekly, monthly"),
        ({"FLEETRUN_BATCH_MAX_ROWS": "0"}, "FLEETRUN_BATCH_MAX_ROWS must be at least 1"),
        ({"FLEETRUN_RETENTION_DAYS": "-1"}, "RETENTION_DAYS"),
        (
            {"FLEETRUN_PG_POOL_MAX_SIZE": "1", "FLEETRUN_MAX_INFLIGHT_FLUSHES": "2"},
            "each flush holds one connection",
        ),
    ],
)
def test_bad_values_are_refused_with_their_name(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load(SinkSettings, section="sink", environ=_env(tmp_path, **values))


def test_show_config_prints_sources_and_masks_the_password(tmp_path: Path) -> None:
    env = _env(tmp_path, FLEETRUN_PG_DSN="postgresql://u:s3cret@h:5/db", PATH="/usr/bin:/bin")
    out = subprocess.run(
        [sys.executable, "-m", "sink", "--show-config"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "FLEETRUN_PG_DSN" in out
    assert "postgresql://u:***@h:5/db" in out
    assert "s3cret" not in out


def test_a_bad_setting_exits_with_status_2(tmp_path: Path) -> None:
    env = _env(tmp_path, FLEETRUN_LINGER_MS="soon", PATH="/usr/bin:/bin")
    proc = subprocess.run(
        [sys.executable, "-m", "sink"], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "FLEETRUN_LINGER_MS='soon'" in proc.stderr


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(
        m.filename == p.name
        for m, p in zip(migrations, sorted(ROOT.glob("sink/migrations/*.sql")), strict=True)
    )
    assert len({m.checksum for m in migrations}) == len(migrations)
