"""The sink's settings and its migration files (no database needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from fleetrun.runtime.settings import SettingsError, load, load_with_sources, render
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
        FLEETRUN_SINK_BATCH_MAX_ROWS="1_000",
        FLEETRUN_SINK_LINGER_MS="20",
    )
    s = load(SinkSettings, environ=env)
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
    assert s.pg_dsn.get_secret_value() == "postgresql://u:s3cret@h:5/db"
    assert "s3cret" not in repr(s)
    assert "s3cret" not in render(s)


def test_toml_section(tmp_path: Path) -> None:
    config = tmp_path / "fleetrun.toml"
    config.write_text('[sink]\nretention_days = 7\npartition_interval = "weekly"\n')
    s, sources = load_with_sources(
        SinkSettings, environ=_env(tmp_path, FLEETRUN_CONFIG=str(config))
    )
    assert (s.retention_days, s.partition_interval) == (7, "weekly")
    assert str(sources["retention_days"]) == f"config file {config} [sink]"


def test_the_collectors_table_and_variables_are_not_the_sinks(tmp_path: Path) -> None:
    config = tmp_path / "fleetrun.toml"
    config.write_text("[collector]\nmax_poll_interval_ms = 1\n")
    env = _env(
        tmp_path,
        FLEETRUN_CONFIG=str(config),
        FLEETRUN_COLLECTOR_SESSION_TIMEOUT_MS="1",
        FLEETRUN_COLLECTOR_OPS_PORT="1",
    )
    assert load(SinkSettings, environ=env) == SinkSettings()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"FLEETRUN_SINK_PARTITION_INTERVAL": "hourly"},
            "FLEETRUN_SINK_PARTITION_INTERVAL='hourly' (from environment): "
            "expected one of 'daily', 'weekly' or 'monthly'",
        ),
        (
            {"FLEETRUN_SINK_BATCH_MAX_ROWS": "0"},
            "FLEETRUN_SINK_BATCH_MAX_ROWS='0' (from environment): must be at least 1",
        ),
        *(
            (
                {f"FLEETRUN_SINK_{name}": "0"},
                f"FLEETRUN_SINK_{name}='0' (from environment): must be at least 1",
            )
            for name in (
                "BATCH_MAX_BYTES",
                "MAX_BUFFER_BYTES",
                "MAX_INFLIGHT_FLUSHES",
                "PG_POOL_MAX_SIZE",
                "MAX_POLL_RECORDS",
            )
        ),
        (
            {"FLEETRUN_SINK_RETENTION_DAYS": "-1", "FLEETRUN_SINK_PARTITION_AHEAD_DAYS": "-2"},
            "FLEETRUN_SINK_PARTITION_AHEAD_DAYS='-2' (from environment): must be at least 0; "
            "FLEETRUN_SINK_RETENTION_DAYS='-1' (from environment): must be at least 0",
        ),
        (
            {"FLEETRUN_SINK_PG_POOL_MAX_SIZE": "1", "FLEETRUN_SINK_MAX_INFLIGHT_FLUSHES": "2"},
            "FLEETRUN_SINK_PG_POOL_MAX_SIZE must be at least FLEETRUN_SINK_MAX_INFLIGHT_FLUSHES "
            "(each flush holds one connection)",
        ),
        (
            {"FLEETRUN_SINK_LINGER_MS": "soon"},
            "FLEETRUN_SINK_LINGER_MS='soon' (from environment): expected a number",
        ),
    ],
)
def test_bad_values_are_refused_with_their_name(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        load(SinkSettings, environ=_env(tmp_path, **values))


def test_the_checks_hold_for_settings_built_directly() -> None:
    with pytest.raises(ValidationError, match="each flush holds one connection"):
        SinkSettings(pg_pool_max_size=1, max_inflight_flushes=2)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        SinkSettings(batch_max_rows=0)


def _fleetrun(tmp_path: Path, *args: str, **values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetrun", *args],
        env=_env(tmp_path, PATH="/usr/bin:/bin", **values),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["sink", "migrate"])
def test_show_config_prints_sources_and_masks_the_password(tmp_path: Path, command: str) -> None:
    shown = _fleetrun(
        tmp_path,
        command,
        "--show-config",
        FLEETRUN_PG_DSN="postgresql://u:s3cret@h:5/db",
        FLEETRUN_SINK_LINGER_MS="20",
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == len(SinkSettings.model_fields)
    assert any(
        re.fullmatch(
            r"FLEETRUN_SINK_PG_DSN +  = postgresql://u:\*\*\*@h:5/db    "
            r"# environment \(as FLEETRUN_PG_DSN\)",
            line,
        )
        for line in lines
    ), shown.stdout
    assert any(
        re.fullmatch(r"FLEETRUN_SINK_LINGER_MS +  = 20.0    # environment", x) for x in lines
    )
    assert "s3cret" not in shown.stdout + shown.stderr


def test_a_bad_setting_exits_with_status_2(tmp_path: Path) -> None:
    proc = _fleetrun(tmp_path, "sink", FLEETRUN_SINK_LINGER_MS="soon")
    assert proc.returncode == 2
    assert (
        "fleetrun: FLEETRUN_SINK_LINGER_MS='soon' (from environment): expected a number"
        in proc.stderr
    )


def test_migrations_are_numbered_uniquely_from_one() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    # Gaps are allowed (migrations written on branches land in either order), duplicates not.
    assert versions == sorted(set(versions))
    assert versions[0] == 1
    assert all(
        m.filename == p.name
        for m, p in zip(migrations, sorted(ROOT.glob("sink/migrations/*.sql")), strict=True)
    )
    assert len({m.checksum for m in migrations}) == len(migrations)
