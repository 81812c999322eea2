"""The `fleetrun` command line against the real stack: a collector and a sink run in-process."""

from __future__ import annotations

import ast
import asyncio
import csv
import io
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import schemas
from fleetrun.cli.errors import (
    EXIT_HOSTS_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    EXIT_WAIT_TIMEOUT,
)
from fleetrun.cli.settings import CliSettings
from sink.app import run_migrations, run_sink
from stack.env import StackEnv, kafka_options
from tests.support.cli import FLEETRUN, run_fleetrun
from tests.support.collector import (
    collector_settings,
    counted,
    finished,
    read_until,
    running_collector,
    runs,
)
from tests.support.kafka import Topics
from tests.support.records import make_counts, make_result
from tests.support.settings import process_env
from tests.support.sink import sink_settings_for

REPO = Path(__file__).resolve().parents[2]
# demo1 fails, the others print the same line: two groups, failures first.
SPLIT = (
    "case $(echo $SSH_CONNECTION | cut -d' ' -f3) in "
    "{first}) echo broken >&2; exit 4;; *) echo same everywhere;; esac"
)


def _var(setting: str) -> str:
    """The variable that sets the CLI's `setting`."""
    return CliSettings.env_name(setting)


@dataclass(frozen=True, slots=True)
class Cli:
    """Runs `fleetrun` as a user would, pointed at this test's topics and database."""

    env: dict[str, str]

    async def __call__(
        self, *args: str, timeout_s: float = 60, extra_env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        env = {**self.env, **(extra_env or {})}
        return await run_fleetrun(env, *args, timeout_s=timeout_s)


@pytest.fixture
async def cli(stack_env: StackEnv, topics: Topics, pg_dsn: str) -> AsyncIterator[Cli]:
    """A collector and a sink on private topics and database, and the CLI aimed at them."""
    sink_settings = sink_settings_for(stack_env, topics.prefix, pg_dsn)
    await run_migrations(sink_settings)
    stop = asyncio.Event()
    sink_task = asyncio.create_task(run_sink(sink_settings, stop))
    # The stack's env file (Kafka), this test's topics and database, the stack's inventory.
    env = process_env(
        CliSettings,
        stack_env,
        {"topic_prefix": topics.prefix, "pg_dsn": pg_dsn, "inventory": stack_env.inventory},
    )
    try:
        async with running_collector(collector_settings(topics.prefix)):
            yield Cli(env)
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await sink_task


async def _stored(cli: Cli, request_id: str, hosts: int) -> None:
    """Wait (with a deadline) until the sink has stored every host of the request."""
    async with asyncio.timeout(30):
        while True:
            code, out, _ = await cli("results", request_id, "--json")
            if code != EXIT_NOT_FOUND and len(out.splitlines()) >= hosts:
                return
            await asyncio.sleep(0.2)


async def test_run_wait_groups_identical_output_and_exits_0(cli: Cli) -> None:
    code, out, err = await cli("run", "echo hello from $(id -un)", "-t", "@demo", "--wait")
    assert code == EXIT_OK, err
    assert "demo[1-3] (3) ok" in out
    assert "hello from fleetrun" in out
    assert "3 hosts: 3 ok" in out


async def test_failures_come_first_and_exit_1_then_results_status_requests(
    cli: Cli, stack_env: StackEnv
) -> None:
    first = stack_env.ssh_hosts[0]
    rid = str(uuid.uuid4())
    command = SPLIT.format(first=first.address)
    code, out, err = await cli("run", command, "-t", "@demo", "--wait", "--request-id", rid)
    assert code == EXIT_HOSTS_FAILED, err
    failed_at = out.index(f"{first.name} (1) failed: exit status 4")
    ok_at = out.index("(2) ok")
    assert failed_at < ok_at
    assert "stderr: broken" in out

    await _stored(cli, rid, 3)
    code, out, _ = await cli("results", rid)
    assert code == EXIT_HOSTS_FAILED
    assert f"{first.name} (1) failed" in out
    assert "same everywhere" in out

    code, out, _ = await cli("results", rid, "--json")
    decoded = [schemas.decode_result(line) for line in out.splitlines()]
    assert sorted(r.host for r in decoded) == sorted(h.name for h in stack_env.ssh_hosts)

    code, out, _ = await cli("results", rid, "--csv", "--host", first.name)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["host"], r["status"], r["exit_status"]) for r in rows] == [
        (first.name, "failed", "4")
    ]

    code, out, _ = await cli("status", rid)
    assert code == EXIT_OK
    assert "state     completed" in out
    assert "3/3 reported: 2 ok, 1 failed" in out

    code, out, _ = await cli("requests")
    assert code == EXIT_OK
    assert rid in out


async def test_json_mode_prints_one_contract_result_per_line(cli: Cli) -> None:
    code, out, _ = await cli("run", "printf 'a\\0b'", "-t", "@demo", "--wait", "--json")
    assert code == EXIT_OK
    results = [schemas.decode_result(line) for line in out.splitlines()]
    assert len(results) == 3
    assert {r.stdout_data for r in results} == {b"a\0b"}
    assert {r.stdout_encoding for r in results} == {"base64"}  # NUL survives: base64 on the wire


async def test_a_rejected_request_says_why_and_exits_3(cli: Cli) -> None:
    code, _, err = await cli("run", "true", "-t", "@no-such-group", "--wait")
    assert code == EXIT_REJECTED
    assert "rejected" in err
    assert "no-such-group" in err


async def test_a_target_outside_the_inventory_rules_is_rejected_with_the_rule(cli: Cli) -> None:
    code, _, err = await cli("run", "true", "-t", "root@demo1", "--wait")
    assert code == EXIT_REJECTED
    assert "target 'root@demo1' sets the login user" in err
    assert "FLEETRUN_COLLECTOR_ALLOW_TARGETS=user" in err


async def test_a_denied_environment_variable_is_refused_before_sending(cli: Cli) -> None:
    code, _, err = await cli("run", "true", "-t", "@demo", "-e", "LD_PRELOAD=/tmp/x.so")
    assert code == EXIT_USAGE
    assert "env.LD_PRELOAD: changes how programs load or start and is not allowed" in err


async def test_ctrl_c_stops_waiting_but_not_the_request(cli: Cli, topics: Topics) -> None:
    rid = str(uuid.uuid4())
    proc = await asyncio.create_subprocess_exec(
        FLEETRUN,
        *("run", "sleep 2; echo done", "-t", "@demo", "--wait", "--request-id", rid),
        env=cli.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while b"submitted" not in await proc.stderr.readline():
            pass
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == EXIT_INTERRUPTED
    assert f"request {rid} keeps running" in err.decode()
    seen = await read_until(topics.bootstrap, topics.prefix, finished(rid), timeout_s=30)
    assert [r.status for r in seen.for_request(rid)[0]] == ["ok", "ok", "ok"]


async def test_one_host_spelt_three_ways_runs_once_and_is_stored_once(
    cli: Cli, stack_env: StackEnv, pg_dsn: str, remote_tag: str
) -> None:
    # The stack's inventory: demo1 is 127.0.10.1, port 2222, user fleetrun ([defaults]).
    first = stack_env.ssh_hosts[0]
    spellings = [first.name, f"fleetrun@{first.name}:{first.port}", f"{first.address}:{first.port}"]
    rid = str(uuid.uuid4())
    command = counted("spelt", remote_tag, "hostname")
    targets = [arg for spelling in spellings for arg in ("-t", spelling)]
    code, out, err = await cli("run", command, *targets, "--wait", "--request-id", rid)
    assert code == EXIT_OK, err
    assert f"{first.name} (1) ok" in out
    assert "1 host: 1 ok" in out
    assert (await runs(stack_env, "spelt", remote_tag))[first.name] == 1

    # Stored: one requests row counting one host, and one result row (not one per spelling).
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        async with asyncio.timeout(30):
            while True:
                row = await conn.fetchrow(
                    "SELECT targets_total, count_ok, (SELECT count(*) FROM results r "
                    "WHERE r.request_id = q.request_id) AS rows FROM requests q "
                    "WHERE request_id = $1 AND completed_at IS NOT NULL",
                    uuid.UUID(rid),
                    timeout=10,
                )
                if row is not None and row["rows"] >= row["targets_total"]:
                    break
                await asyncio.sleep(0.1)
    finally:
        await conn.close(timeout=10)
    assert (row["targets_total"], row["count_ok"], row["rows"]) == (1, 1, 1)
    code, out, _ = await cli("status", rid)
    assert "1/1 reported: 1 ok" in out
    assert "counted" not in out


@pytest.fixture
async def cli_alone(stack_env: StackEnv, topics: Topics) -> Cli:
    """The CLI on private topics with no collector: the test plays the collector itself."""
    return Cli(process_env(CliSettings, stack_env, {"topic_prefix": topics.prefix}))


async def _next_request(topics: Topics) -> schemas.Request:
    """The first request submitted on the test's topics."""
    consumer = AIOKafkaConsumer(
        topics["requests"],
        **kafka_options(topics.bootstrap),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        return schemas.decode_request(record.value)
    finally:
        await consumer.stop()


async def _old_collector(topics: Topics, *, complete: bool) -> None:
    """Answers the next request as a collector from before targets were de-duplicated by
    endpoint: demo1 spelt twice is accepted and counted as 2 hosts, with one result. It writes
    in Kafka transactions and aborts one holding a second, failed result: a reader that is
    not read_committed would see it. With `complete=False`, it only accepts."""
    request = await _next_request(topics)
    key = request.request_id.encode()
    producer = AIOKafkaProducer(
        **kafka_options(topics.bootstrap),
        transactional_id=f"{topics.prefix}old-collector",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        async with asyncio.timeout(30):
            accepted = schemas.Status.accepted(request, targets_total=2, collector="old")
            async with producer.transaction():
                await producer.send(topics["status"], schemas.encode(accepted), key=key)
            if not complete:
                return
            aborted = make_result(request.request_id, "demo1", status="failed", port=2222)
            await producer.begin_transaction()
            await producer.send(topics["results"], schemas.encode(aborted), key=key)
            await producer.abort_transaction()
            result = make_result(request.request_id, "demo1", port=2222, user="fleetrun")
            completed = schemas.Status.completed(
                request.request_id, make_counts(ok=2), duration_ms=5, collector="old"
            )
            async with producer.transaction():
                await producer.send(topics["results"], schemas.encode(result), key=key)
                await producer.send(topics["status"], schemas.encode(completed), key=key)
    finally:
        await producer.stop()


async def test_run_wait_ends_with_the_completed_status_when_results_will_not_all_come(
    cli_alone: Cli, topics: Topics
) -> None:
    collector = asyncio.create_task(_old_collector(topics, complete=True))
    code, out, err = await cli_alone("run", "hostname", "-t", "demo1", "--wait", timeout_s=40)
    await collector
    assert code == EXIT_OK, err  # what the completed status counts: 2 ok
    assert "demo1 (1) ok" in out
    assert "failed" not in out  # the aborted transaction's result is never shown
    assert "2 hosts: 2 ok" in out
    assert "1 of 2 results counted by the collector were not read here" in err


@pytest.mark.parametrize(
    ("accepting", "line"),
    [
        (False, "no collector accepted request {rid} within 2s"),
        (True, "stopped waiting after 2s (--wait-timeout); the request continues"),
    ],
)
async def test_run_wait_stops_at_its_wait_limit(
    cli_alone: Cli, topics: Topics, accepting: bool, line: str
) -> None:
    rid = str(uuid.uuid4())
    args = ("run", "true", "-t", "demo1", "--wait", "--wait-timeout", "2s", "--request-id", rid)
    if accepting:
        collector = asyncio.create_task(_old_collector(topics, complete=False))
        code, _, err = await cli_alone(*args, timeout_s=30)
        await collector
    else:
        code, _, err = await cli_alone(*args, timeout_s=30)
    assert code == EXIT_WAIT_TIMEOUT, err
    assert line.format(rid=rid) in err
    assert f"fleetrun status {rid}" in err


async def test_hosts_preview_resolves_the_inventory(cli: Cli, stack_env: StackEnv) -> None:
    code, out, err = await cli("hosts", "@demo", "!demo2")
    assert code == EXIT_OK, err
    first, _, third = stack_env.ssh_hosts
    assert out.splitlines()[0] == "demo[1,3] (2 hosts)"
    assert f"fleetrun@{first.address}:{first.port}" in out
    assert f"fleetrun@{third.address}:{third.port}" in out


@pytest.mark.parametrize(
    ("args", "env", "code", "line"),
    [
        (
            ("hosts", "web[1-"),
            {},
            EXIT_USAGE,
            "fleetrun: targets[0]: 'web[1-': '[' is never closed",
        ),
        (("hosts", "@nope"), {}, EXIT_USAGE, "'@nope' is not a group"),
        (("run", "true", "-t", "h", "--timeout", "soon"), {}, EXIT_USAGE, "--timeout 'soon'"),
        (
            ("run", "true", "-t", "h"),
            {_var("kafka_bootstrap"): "127.0.0.1:9", _var("kafka_timeout_s"): "3"},
            EXIT_UNAVAILABLE,
            "fleetrun: cannot reach Kafka at 127.0.0.1:9",
        ),
        (
            ("results", "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"),
            {_var("pg_dsn"): "postgresql://fleetrun:x@127.0.0.1:9/fleetrun"},
            EXIT_UNAVAILABLE,
            "fleetrun: cannot reach PostgreSQL at postgresql://fleetrun:***@127.0.0.1:9/fleetrun",
        ),
        (
            ("run", "true", "-t", "h"),
            {_var("kafka_timeout_s"): "soon"},
            EXIT_USAGE,
            f"fleetrun: {_var('kafka_timeout_s')}='soon' (from environment): expected a number",
        ),
        (("results", "not-a-uuid"), {}, EXIT_USAGE, "'not-a-uuid' is not a request id"),
        (
            ("results", "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10"),
            {},
            EXIT_NOT_FOUND,
            "no results stored for request",
        ),
    ],
)
async def test_user_errors_end_with_one_clear_line(
    cli: Cli, args: tuple[str, ...], env: dict[str, str], code: int, line: str
) -> None:
    got, out, err = await cli(*args, extra_env=env)
    assert got == code, (out, err)
    last = err.strip().splitlines()[-1]
    assert line in last
    assert "Traceback" not in err


async def test_examples_produce_and_consume_without_fleetrun(cli: Cli, topics: Topics) -> None:
    base = ["--bootstrap", topics.bootstrap, "--topic-prefix", topics.prefix]
    if admin := StackEnv.load().kafka_admin:  # the test's own topics: the stack's super user
        base += [
            "--user",
            admin["kafka_sasl_username"],
            "--password-file",
            str(admin["kafka_sasl_password_file"]),
            "--ca-file",
            str(admin["kafka_ssl_ca_file"]),
        ]
    produced = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "examples" / "produce_request.py"),
        *base,
        "-t",
        "@demo",
        "echo from another team",
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, _ = await produced.communicate()
    assert produced.returncode == 0
    rid = out.decode().strip()
    consumed = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "examples" / "consume_results.py"),
        *base,
        "--request-id",
        rid,
        "--count",
        "3",
        "--timeout-s",
        "60",
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, _ = await consumed.communicate()
    assert consumed.returncode == 0
    lines = out.decode().splitlines()
    assert len(lines) == 3
    assert all(" ok exit=0 from another team" in line for line in lines)


def test_examples_stand_alone() -> None:
    ours = {"fleetrun", "schemas", "collector", "sink", "stack"}
    for example in (REPO / "examples").glob("*.py"):
        tree = ast.parse(example.read_text())
        imported = {
            a.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for a in n.names
        }
        imported |= {
            (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
        }
        assert imported & ours == set(), example


# A host that retitles the window (OSC 0), clears the screen, writes the clipboard (OSC 52) and
# rings the bell, and puts a formula where a spreadsheet would evaluate it (issue 14 item 6).
HOSTILE = r"printf '\033]0;pwned\007\033[2J\033]52;c;ZXZpbA==\007done\n'; printf '=1+2' >&2"
HOSTILE_OUT = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07done"
HOSTILE_SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07done"


async def test_host_controls_reach_the_terminal_escaped_unless_raw(
    cli: Cli, stack_env: StackEnv
) -> None:
    first = stack_env.ssh_hosts[0].name
    rid = str(uuid.uuid4())
    code, out, err = await cli("run", HOSTILE, "-t", first, "--wait", "--request-id", rid)
    assert code == EXIT_OK, err
    assert HOSTILE_SHOWN in out
    assert "\x1b" not in out + err
    assert "\x07" not in out + err

    code, out, _ = await cli("run", HOSTILE, "-t", first, "--wait", "--raw")
    assert code == EXIT_OK
    assert HOSTILE_OUT in out

    await _stored(cli, rid, 1)
    code, out, _ = await cli("results", rid)
    assert HOSTILE_SHOWN in out
    assert "\x1b" not in out
    assert "\x07" not in out
    code, out, _ = await cli("results", rid, "--raw")
    assert HOSTILE_OUT in out

    code, out, _ = await cli("results", rid, "--csv")
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["stdout"] == HOSTILE_SHOWN + "\n"
    assert row["stderr"] == "'=1+2"

    code, out, _ = await cli("results", rid, "--json")
    (result,) = [schemas.decode_result(line) for line in out.splitlines()]
    assert result.stdout_data == (HOSTILE_OUT + "\n").encode()  # --json stays exact
