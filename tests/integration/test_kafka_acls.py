"""Authenticated Kafka (issue 14 item 1), on the stack's real broker: SASL/SCRAM over TLS, and the
ACLs of stack/acls.py granted on this test's topics, exactly as the stack grants them on its own.

Each test connects as the principal it is about; the fixtures administer as the super user.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

import schemas
from fleetrun.cli.errors import EXIT_OK, EXIT_USAGE
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime.probes import KafkaProbe
from stack.acls import Acl, delete_acls, ensure_acls, fleetrun_acls
from stack.config import TOPIC_PARTITIONS
from stack.env import StackEnv
from tests.support.cli import run_fleetrun
from tests.support.collector import collector_settings, running_collector
from tests.support.kafka import Topics
from tests.support.settings import process_env
from tests.support.sink import MakeSink, wait_for_rows


@pytest.fixture
async def acls(stack_env: StackEnv, topics: Topics) -> AsyncIterator[list[Acl]]:
    """The stack's ACLs for this test's topics and groups; deleted afterwards."""
    granted = fleetrun_acls(
        topics.prefix,
        collector_group=topics.prefix + "collector",
        sink_group=topics.prefix + "sink",
    )
    await ensure_acls(stack_env.kafka_client(), granted, timeout_s=30)
    yield granted
    await delete_acls(stack_env.kafka_client(), granted, timeout_s=30)


def _request(command: str = "true") -> schemas.Request:
    return schemas.Request.new(principal="acl-test", command=command, targets=("@demo",))


async def _produce_request(kafka: dict[str, Any], topic: str) -> None:
    producer = AIOKafkaProducer(**kafka, request_timeout_ms=10_000)
    try:
        async with asyncio.timeout(30):
            await producer.start()
            request = _request()
            await producer.send_and_wait(
                topic, schemas.encode(request), key=request.request_id.encode()
            )
    finally:
        await producer.stop()


async def _requests_produced(stack_env: StackEnv, topics: Topics) -> int:
    """How many records the test's requests topic holds (read as the super user)."""
    tps = [TopicPartition(topics["requests"], p) for p in range(TOPIC_PARTITIONS["requests"])]
    consumer = AIOKafkaConsumer(**stack_env.kafka_client(), group_id=None)
    try:
        async with asyncio.timeout(30):
            await consumer.start()
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return sum(ends.values())


async def _fleetrun(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run_fleetrun(env, *args, timeout_s=90)


@pytest.mark.usefixtures("acls")
@pytest.mark.parametrize("principal", ["sink", "web", "collector"])
async def test_a_principal_without_the_acl_cannot_produce_a_request(
    stack_env: StackEnv, topics: Topics, principal: str
) -> None:
    kafka = stack_env.kafka_client(**stack_env.kafka_principal(principal))
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce_request(kafka, topics["requests"])
    assert await _requests_produced(stack_env, topics) == 0


@pytest.mark.usefixtures("acls")
async def test_the_cli_says_which_principal_kafka_refused(
    stack_env: StackEnv, topics: Topics
) -> None:
    as_sink = process_env(
        CliSettings,
        stack_env,
        {"topic_prefix": topics.prefix, **stack_env.kafka_principal("sink")},
    )
    code, _, err = await _fleetrun(as_sink, "run", "true", "-t", "@demo")
    assert code == EXIT_USAGE, err
    assert "does not allow User:sink" in err
    assert "TopicAuthorizationFailedError" in err
    assert await _requests_produced(stack_env, topics) == 0


@pytest.mark.usefixtures("acls")
async def test_a_wrong_password_is_refused(
    stack_env: StackEnv, topics: Topics, tmp_path: Path
) -> None:
    wrong = tmp_path / "team.password"
    wrong.write_text(uuid.uuid4().hex + "\n")
    wrong.chmod(0o600)
    team = stack_env.kafka_principal("team") | {"kafka_sasl_password_file": wrong}
    with pytest.raises(KafkaConnectionError):
        await _produce_request(stack_env.kafka_client(**team), topics["requests"])
    # The services' health probe says so too (/healthz, the outage log), not just "down".
    probe = KafkaProbe(stack_env.kafka_client(**team), "acl-test-probe", timeout_s=10)
    try:
        with pytest.raises(KafkaConnectionError, match="login refused: SaslAuthenticationFailed"):
            await probe()
    finally:
        await probe.close()
    env = process_env(CliSettings, stack_env, {"topic_prefix": topics.prefix, **team})
    code, _, err = await _fleetrun(env, "run", "true", "-t", "@demo")
    assert code == EXIT_USAGE, err
    assert "refused the login of User:team (SCRAM-SHA-512)" in err
    assert wrong.read_text().strip() not in err
    assert await _requests_produced(stack_env, topics) == 0


@pytest.mark.usefixtures("acls")
async def test_a_client_without_the_stack_ca_is_refused_before_it_logs_in(
    stack_env: StackEnv, topics: Topics
) -> None:
    team = stack_env.kafka_principal("team") | {"kafka_ssl_ca_file": None}  # the system's CAs
    env = process_env(CliSettings, stack_env, {"topic_prefix": topics.prefix, **team})
    env[CliSettings.env_name("kafka_ssl_ca_file")] = ""
    code, _, err = await _fleetrun(env, "run", "true", "-t", "@demo")
    assert code == EXIT_USAGE, err
    assert "CERTIFICATE_VERIFY_FAILED" in err


@pytest.mark.usefixtures("acls")
async def test_each_service_as_its_own_principal_runs_a_team_request_end_to_end(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    sink = sinks(group_id=topics.prefix + "sink", **stack_env.kafka_principal("sink"))
    await sink.start()
    team = process_env(
        CliSettings,
        stack_env,
        {
            "topic_prefix": topics.prefix,
            "pg_dsn": pg_dsn,
            "inventory": stack_env.inventory,
            **stack_env.kafka_principal("team"),
        },
    )
    settings = collector_settings(topics.prefix, **stack_env.kafka_principal("collector"))
    async with running_collector(settings):
        code, out, err = await _fleetrun(
            team, "run", "echo hello from the team", "-t", "@demo", "--wait", "--json"
        )
    assert code == EXIT_OK, err
    results = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    assert len(results) == len(stack_env.ssh_hosts)
    assert {r["stdout"] for r in results} == {"hello from the team\n"}
    # The sink, as `sink`, read them and stored them; the team reads them back from PostgreSQL.
    await wait_for_rows(pg_dsn, len(results), timeout_s=60)
    request_id = results[0]["request_id"]
    code, out, err = await _fleetrun(team, "results", request_id, "--json")
    assert code == EXIT_OK, err
    assert len(out.splitlines()) == len(results)
