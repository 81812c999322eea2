"""`python -m collector` front matter and the one place Kafka errors are classified."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import errors as kafka_errors

from collector import main
from collector.errors import CollectorError, RecordTooLarge, classify, is_retriable
from collector.kafka import Topics


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fleetrun.env"
    path.write_text("FLEETRUN_KAFKA_BOOTSTRAP=127.0.0.1:1\nFLEETRUN_TOPIC_PREFIX=x.\n")
    monkeypatch.setenv("FLEETRUN_ENV_FILE", str(path))
    monkeypatch.delenv("FLEETRUN_CONFIG", raising=False)
    return path


def test_show_config_prints_every_setting_with_its_source(
    env_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETRUN_MAX_INFLIGHT_REQUESTS", "7")
    assert main(["--show-config"]) == 0
    out = capsys.readouterr().out
    assert "FLEETRUN_KAFKA_BOOTSTRAP" in out
    assert f"127.0.0.1:1    # env file {env_file}" in out
    assert "FLEETRUN_MAX_INFLIGHT_REQUESTS" in out
    assert "= 7    # environment" in out
    assert "FLEETRUN_REBALANCE_DRAIN_S" in out


def test_a_bad_setting_exits_2_naming_it(
    env_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETRUN_MAX_INFLIGHT_REQUESTS", "many")
    assert main(["--show-config"]) == 2
    assert "FLEETRUN_MAX_INFLIGHT_REQUESTS='many'" in capsys.readouterr().err


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
