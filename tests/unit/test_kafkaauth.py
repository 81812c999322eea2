"""Kafka client security settings (fleetrun/runtime/kafkaauth.py): one block, every service."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from collector.settings import CollectorSettings
from fleetrun.cli.settings import CliSettings
from fleetrun.cli.web.settings import WebSettings
from fleetrun.runtime.kafkaauth import KafkaClientSettings, client_options
from fleetrun.runtime.settings import SettingsError, load, render
from sink.settings import SinkSettings

SASL = {
    "FLEETRUN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "FLEETRUN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
}


def _password_file(tmp_path: Path, mode: int = 0o600, text: str = "s3cret-pw\n") -> Path:
    path = tmp_path / "kafka.password"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    options = client_options(KafkaClientSettings(kafka_bootstrap="k:9092"))
    assert options == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("cls", [CollectorSettings, SinkSettings, CliSettings, WebSettings])
def test_every_service_reads_the_shared_block_and_its_own_user(
    cls: type[KafkaClientSettings], tmp_path: Path
) -> None:
    own = cls.model_config["env_prefix"]
    settings = load(
        cls,
        environ={
            **SASL,
            "FLEETRUN_KAFKA_SASL_USERNAME": "shared-user",
            f"{own}KAFKA_SASL_USERNAME": "own-user",
            f"{own}KAFKA_SASL_PASSWORD_FILE": str(_password_file(tmp_path)),
        },
    )
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "own-user"  # the service's own name wins
    assert options["sasl_plain_password"] == "s3cret-pw"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "needs a user: set FLEETRUN_CLI_KAFKA_SASL_USERNAME"),
        (
            {"FLEETRUN_CLI_KAFKA_SASL_USERNAME": "team"},
            "needs exactly one of FLEETRUN_CLI_KAFKA_SASL_PASSWORD and "
            "FLEETRUN_CLI_KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {
                "FLEETRUN_CLI_KAFKA_SASL_USERNAME": "team",
                "FLEETRUN_CLI_KAFKA_SASL_PASSWORD": "a",
                "FLEETRUN_CLI_KAFKA_SASL_PASSWORD_FILE": "/x",
            },
            "needs exactly one of",
        ),
        (
            {"FLEETRUN_KAFKA_SECURITY_PROTOCOL": "SASL"},
            "FLEETRUN_KAFKA_SECURITY_PROTOCOL='SASL' .*expected one of 'PLAINTEXT'",
        ),
    ],
)
def test_incomplete_sasl_settings_say_what_is_missing(extra: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(CliSettings, environ={**SASL, **extra})


def test_a_password_file_others_may_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = _password_file(tmp_path, mode=0o644)
    settings = load(
        CliSettings,
        environ={
            **SASL,
            "FLEETRUN_CLI_KAFKA_SASL_USERNAME": "team",
            "FLEETRUN_CLI_KAFKA_SASL_PASSWORD_FILE": str(path),
        },
    )
    with pytest.raises(SettingsError, match=f"mode 0644 lets others read .*chmod 600 {path}"):
        client_options(settings)


def test_an_unreadable_ca_file_names_the_setting(tmp_path: Path) -> None:
    settings = CliSettings(
        kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "missing-ca.pem"
    )
    with pytest.raises(SettingsError, match=r"FLEETRUN_CLI_KAFKA_SSL_CA_FILE=.*missing-ca\.pem"):
        client_options(settings)


def test_the_password_never_shows_in_show_config_repr_or_errors() -> None:
    settings = load(
        SinkSettings,
        environ={
            **SASL,
            "FLEETRUN_SINK_KAFKA_SASL_USERNAME": "sink",
            "FLEETRUN_SINK_KAFKA_SASL_PASSWORD": "hunter2-topsecret",
        },
    )
    assert "hunter2-topsecret" not in render(settings)
    assert "hunter2-topsecret" not in repr(settings)
    assert "FLEETRUN_SINK_KAFKA_SASL_PASSWORD" in render(settings)
    with pytest.raises(SettingsError) as refused:
        load(
            SinkSettings,
            environ={**SASL, "FLEETRUN_SINK_KAFKA_SASL_PASSWORD": "hunter2-topsecret"},
        )
    assert "hunter2-topsecret" not in str(refused.value)
