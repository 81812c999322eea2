"""`fleetrun collector` front matter and the one place Kafka errors are classified."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import errors as kafka_errors

from collector.errors import CollectorError, RecordTooLarge, classify, is_retriable
from collector.kafka import Topics
from collector.settings import CollectorSettings


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fleetrun.env"
    path.write_text("FLEETRUN_KAFKA_BOOTSTRAP=127.0.0.1:1\nFLEETRUN_TOPIC_PREFIX=x.\n")
    monkeypatch.setenv("FLEETRUN_ENV_FILE", str(path))
    monkeypatch.delenv("FLEETRUN_CONFIG", raising=False)
    return path


def _collector(*args: str) -> subprocess.CompletedProcess[str]:
    """`fleetrun collector ARGS` as a user runs it, in this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "fleetrun", "collector", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_show_config_prints_every_setting_with_its_source(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETRUN_COLLECTOR_MAX_INFLIGHT_REQUESTS", "7")
    monkeypatch.setenv("FLEETRUN_SINK_MAX_POLL_INTERVAL_MS", "1")  # the sink's, not ours
    shown = _collector("--show-config")
    assert shown.returncode == 0, shown.stderr
    rows = {
        line.split(" = ")[0].rstrip(): line.split(" = ")[1] for line in shown.stdout.splitlines()
    }
    assert len(rows) == len(CollectorSettings.model_fields)  # each under its own name
    assert all(name.startswith("FLEETRUN_COLLECTOR_") for name in rows)
    assert rows["FLEETRUN_COLLECTOR_KAFKA_BOOTSTRAP"] == (
        f"127.0.0.1:1    # env file {env_file} (as FLEETRUN_KAFKA_BOOTSTRAP)"
    )
    assert rows["FLEETRUN_COLLECTOR_MAX_INFLIGHT_REQUESTS"] == "7    # environment"
    assert rows["FLEETRUN_COLLECTOR_MAX_POLL_INTERVAL_MS"] == "300000    # default"
    assert rows["FLEETRUN_COLLECTOR_REBALANCE_DRAIN_S"] == "20.0    # default"


def test_a_bad_setting_exits_2_naming_it(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETRUN_COLLECTOR_MAX_INFLIGHT_REQUESTS", "many")
    shown = _collector("--show-config")
    assert shown.returncode == 2
    assert (
        "fleetrun: FLEETRUN_COLLECTOR_MAX_INFLIGHT_REQUESTS='many' (from environment): "
        "expected a whole number" in shown.stderr
    )


def test_topics_follow_the_prefix() -> None:
    t = Topics.from_prefix("team.")
    assert (t.requests, t.results, t.status, t.dlq) == (
        "team.requests",
        "team.results",
        "team.status",
        "team.dlq",
    )


@pytest.mark.parametrize(
    ("exc", "retriable"),
    [
        (kafka_errors.KafkaConnectionError("gone"), True),
        (kafka_errors.RequestTimedOutError(), True),
        (kafka_errors.NotLeaderForPartitionError(), True),
        (kafka_errors.LeaderNotAvailableError(), True),
        (kafka_errors.NotEnoughReplicasError(), True),
        (kafka_errors.KafkaTimeoutError(), True),  # a client-side wait: the broker may be back
        (kafka_errors.NodeNotReadyError(), True),
        (kafka_errors.RebalanceInProgressError(), True),
        (TimeoutError(), True),  # our own deadlines
        (ConnectionResetError(), True),
        (kafka_errors.TopicAuthorizationFailedError(), False),
        (kafka_errors.UnknownError(), False),
        (kafka_errors.InvalidTopicError(), False),
        (ValueError("bug"), False),
    ],
)
def test_kafka_errors_are_classified_once(exc: BaseException, retriable: bool) -> None:
    error = classify(exc, "publishing to x.results")
    assert isinstance(error, CollectorError)
    assert error.retriable is retriable
    assert is_retriable(exc) is retriable
    assert str(error).startswith(f"publishing to x.results: {type(exc).__name__}")


@pytest.mark.parametrize(
    "exc",
    [
        kafka_errors.MessageSizeTooLargeError(),
        kafka_errors.RecordTooLargeError(),
        kafka_errors.RecordListTooLargeError(),
    ],
)
def test_too_large_is_its_own_permanent_error(exc: BaseException) -> None:
    error = classify(exc, "publishing")
    assert isinstance(error, RecordTooLarge)
    assert not error.retriable


def test_classify_keeps_collector_errors() -> None:
    error = CollectorError("already classified", retriable=True)
    assert classify(error, "x") is error


def test_a_policy_it_cannot_use_stops_the_collector_at_start(
    env_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "r"\nprincipals = ["a"]\nmax_hosts = "lots"\n')
    signers = tmp_path / "allowed_signers"
    signers.write_text("")
    monkeypatch.setenv("FLEETRUN_COLLECTOR_POLICY", str(policy))
    monkeypatch.setenv("FLEETRUN_COLLECTOR_ALLOWED_SIGNERS", str(signers))
    started = _collector()
    assert started.returncode == 2
    assert "policy or allowed signers not usable" in started.stderr
    assert f"{policy}: rule 'r': max_hosts must be a positive number" in started.stderr
    monkeypatch.delenv("FLEETRUN_COLLECTOR_ALLOWED_SIGNERS")
    policy.write_text('[[rules]]\nname = "r"\nprincipals = ["a"]\n')
    started = _collector()
    assert started.returncode == 2
    assert "needs FLEETRUN_COLLECTOR_ALLOWED_SIGNERS" in started.stderr
