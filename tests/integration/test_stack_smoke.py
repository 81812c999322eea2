"""The local stack is made of real servers: Kafka, PostgreSQL and OpenSSH, each proven by use."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import asyncssh
import pytest
from aiokafka import AIOKafkaProducer

from stack.config import PG_SERVER_SETTINGS, TOPIC_PARTITIONS
from stack.env import SshTestHost, StackEnv, kafka_options
from tests.support.kafka import Topics, consume_n


@pytest.mark.parametrize("kind", sorted(TOPIC_PARTITIONS))
async def test_kafka_round_trip_through_each_fleetrun_topic(topics: Topics, kind: str) -> None:
    producer = AIOKafkaProducer(
        **kafka_options(topics.bootstrap), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = [(f"k{i}".encode(), uuid.uuid4().bytes) for i in range(5)]
        for key, value in sent:
            meta = await asyncio.wait_for(
                producer.send_and_wait(topics[kind], value, key=key), timeout=30
            )
            assert meta.topic == topics[kind]
    finally:
        await producer.stop()
    received = await consume_n(topics.bootstrap, topics[kind], len(sent))
    assert sorted(received) == sorted(sent)


async def test_stack_topics_exist_with_their_partition_counts(stack_env: StackEnv) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_options(stack_env.kafka_bootstrap))
    await admin.start()
    try:
        described = await admin.describe_topics(
            [stack_env["FLEETRUN_TOPIC_PREFIX"] + k for k in TOPIC_PARTITIONS]
        )
    finally:
        await admin.close()
    got = {d["topic"]: len(d["partitions"]) for d in described}
    prefix = stack_env["FLEETRUN_TOPIC_PREFIX"]
    assert got == {prefix + k: n for k, n in TOPIC_PARTITIONS.items()}


async def test_postgres_round_trip(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)", timeout=10)
        await conn.executemany(
            "INSERT INTO t VALUES ($1, $2)", [(1, "a\u00e9"), (2, "b")], timeout=10
        )
        rows = await conn.fetch("SELECT id, body FROM t ORDER BY id", timeout=10)
        version = await conn.fetchval("SHOW server_version_num", timeout=10)
    finally:
        await conn.close(timeout=10)
    assert [tuple(r) for r in rows] == [(1, "a\u00e9"), (2, "b")]
    assert int(version) >= 150000


async def test_postgres_runs_with_the_stack_server_settings(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        running = {name: await conn.fetchval(f"SHOW {name}") for name in PG_SERVER_SETTINGS}
    finally:
        await conn.close(timeout=10)
    assert running == PG_SERVER_SETTINGS


def _ssh_options(env: StackEnv, known_hosts: Path | str) -> asyncssh.SSHClientConnectionOptions:
    return asyncssh.SSHClientConnectionOptions(
        username=env.ssh_user,
        client_keys=[str(env.client_key)],
        known_hosts=str(known_hosts),
        agent_path=None,
        connect_timeout=10,
        login_timeout=10,
    )


async def test_every_ssh_host_runs_a_command_with_host_keys_verified(stack_env: StackEnv) -> None:
    options = _ssh_options(stack_env, stack_env.known_hosts)

    async def run_on(host: SshTestHost) -> str:
        async with asyncssh.connect(host.address, host.port, options=options) as conn:
            result = await conn.run("echo $SSH_CONNECTION", check=True, timeout=10)
            return str(result.stdout).strip()

    outputs = await asyncio.gather(*(run_on(h) for h in stack_env.ssh_hosts))
    # SSH_CONNECTION ends with the server address and port: each host is a distinct server.
    assert [o.split()[-2:] for o in outputs] == [
        [h.address, str(h.port)] for h in stack_env.ssh_hosts
    ]


async def test_host_missing_from_known_hosts_is_refused(
    stack_env: StackEnv, tmp_path: Path
) -> None:
    first, *others = stack_env.ssh_hosts
    lines = stack_env.known_hosts.read_text().splitlines()
    partial = tmp_path / "known_hosts"
    partial.write_text("\n".join(line for line in lines if f"[{first.address}]" not in line))
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with asyncssh.connect(
            first.address, first.port, options=_ssh_options(stack_env, partial)
        ):
            pass
    assert others  # the remaining entries still verify, so the file itself is well formed
    async with asyncssh.connect(
        others[0].address, others[0].port, options=_ssh_options(stack_env, partial)
    ) as conn:
        assert (await conn.run("true", timeout=10)).exit_status == 0


async def test_host_with_wrong_key_in_known_hosts_is_refused(
    stack_env: StackEnv, tmp_path: Path
) -> None:
    first, second, *_ = stack_env.ssh_hosts
    lines = stack_env.known_hosts.read_text().splitlines()
    key_of = {line.split()[0]: " ".join(line.split()[1:]) for line in lines}
    first_pattern = next(p for p in key_of if f"[{first.address}]" in p)
    second_pattern = next(p for p in key_of if f"[{second.address}]" in p)
    # First host's names, second host's key: a changed (or spoofed) host key.
    swapped = tmp_path / "known_hosts"
    swapped.write_text(f"{first_pattern} {key_of[second_pattern]}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with asyncssh.connect(
            first.address, first.port, options=_ssh_options(stack_env, swapped)
        ):
            pass


def test_stack_up_again_is_a_no_op_and_status_reports_all_up() -> None:
    from stack import Stack

    stack = Stack()
    before = stack.status()
    done = subprocess.run(
        [sys.executable, "-m", "stack", "up"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert stack.status() == before  # same pids: nothing restarted
    status = subprocess.run(
        [sys.executable, "-m", "stack", "status"], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0
    for service in ("kafka", "postgres", "sshd"):
        assert f"{service}" in status.stdout
    assert "DOWN" not in status.stdout
    assert "log: " in status.stdout
