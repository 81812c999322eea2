"""Settings: sources in order, clear errors, secrets masked."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest

from fleetrun.settings import SettingsError, load, load_with_sources, render, setting


@dataclass(frozen=True, slots=True)
class Example:
    kafka_bootstrap: str = setting("127.0.0.1:9092", "Kafka bootstrap servers.")
    max_sessions: int = setting(100, "Global cap on concurrent SSH sessions.")
    linger_ms: float = setting(50.0, "Batch linger.")
    verify_host_keys: bool = setting(True, "Verify host keys.")
    client_keys: tuple[Path, ...] = setting((), "Private keys.")
    inventory: Path | None = setting(None, "Inventory file.")
    pg_dsn: str = setting("postgresql://u:pw@h:5432/db", "PostgreSQL DSN.", secret=True)


def test_defaults_apply_without_any_source(tmp_path: Path) -> None:
    env = {"FLEETRUN_ENV_FILE": str(_env_file(tmp_path, ""))}
    assert load(Example, section="x", environ=env) == Example()


def _env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleetrun.env"
    path.write_text(text)
    return path


def test_sources_override_in_order(tmp_path: Path) -> None:
    env_file = _env_file(tmp_path, "FLEETRUN_MAX_SESSIONS=1\nFLEETRUN_LINGER_MS=5\n# comment\n")
    config = tmp_path / "c.toml"
    config.write_text("max_sessions = 2\nlinger_ms = 6.5\n[x]\nmax_sessions = 3\n")
    environ = {
        "FLEETRUN_ENV_FILE": str(env_file),
        "FLEETRUN_CONFIG": str(config),
        "FLEETRUN_VERIFY_HOST_KEYS": "no",
        "FLEETRUN_CLIENT_KEYS": "/k/a,/k/b",
    }
    got, sources = load_with_sources(
        Example, section="x", environ=environ, overrides={"kafka_bootstrap": "b:1"}
    )
    assert got.max_sessions == 3  # the [x] table beats top-level keys and the env file
    assert got.linger_ms == 6.5
    assert got.verify_host_keys is False
    assert got.client_keys == (Path("/k/a"), Path("/k/b"))
    assert got.kafka_bootstrap == "b:1"
    assert str(sources["max_sessions"]) == f"config file {config} [x]"
    assert str(sources["kafka_bootstrap"]) == "override (command line)"
    with pytest.raises(FrozenInstanceError):
        got.max_sessions = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "FLEETRUN_MAX_SESSIONS",
            "lots",
            "FLEETRUN_MAX_SESSIONS='lots' (from environment): expected a whole number",
        ),
        ("FLEETRUN_VERIFY_HOST_KEYS", "maybe", "expected true or false"),
        ("FLEETRUN_LINGER_MS", "soon", "expected a number"),
    ],
)
def test_bad_values_name_the_variable_and_source(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    environ = {"FLEETRUN_ENV_FILE": str(_env_file(tmp_path, "")), key: value}
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(Example, section="x", environ=environ)


def test_unknown_keys_in_the_service_table_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[x]\nmax_sesions = 3\n")
    environ = {"FLEETRUN_ENV_FILE": str(_env_file(tmp_path, "")), "FLEETRUN_CONFIG": str(config)}
    with pytest.raises(SettingsError, match="unknown setting\\(s\\) max_sesions"):
        load(Example, section="x", environ=environ)


def test_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="FLEETRUN_ENV_FILE=/nope: no such file"):
        load(Example, section="x", environ={"FLEETRUN_ENV_FILE": "/nope"})
    bad = tmp_path / "bad.toml"
    bad.write_text("max_sessions = [")
    environ = {"FLEETRUN_ENV_FILE": str(_env_file(tmp_path, "")), "FLEETRUN_CONFIG": str(bad)}
    with pytest.raises(SettingsError, match="not valid TOML"):
        load(Example, section="x", environ=environ)


def test_secrets_never_show(tmp_path: Path) -> None:
    environ = {
        "FLEETRUN_ENV_FILE": str(_env_file(tmp_path, "")),
        "FLEETRUN_PG_DSN": "postgresql://fleetrun:s3cret@db:5432/fleetrun",
    }
    got, sources = load_with_sources(Example, section="x", environ=environ)
    assert "s3cret" not in repr(got)
    text = render(got, sources)
    assert "s3cret" not in text
    assert "FLEETRUN_PG_DSN" in text
    assert "postgresql://fleetrun:***@db:5432/fleetrun" in text
    assert "FLEETRUN_MAX_SESSIONS     = 100    # default" in text
