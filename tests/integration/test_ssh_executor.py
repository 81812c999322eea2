"""SshExecutor against the stack's real OpenSSH hosts: statuses, output, env, timeouts, pooling."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

import schemas
from collector.inventory import HostSpec, Inventory
from collector.metrics import CollectorMetrics
from collector.ssh import SshExecutor
from schemas import Target
from stack.env import StackEnv
from tests.support.sshexec import (
    MakeExecutor,
    kill_pids,
    marker,
    metric,
    remote_pids,
    request,
    stack_settings,
    wait_gone,
    wait_running,
)


@pytest.fixture
def metrics() -> CollectorMetrics:
    return CollectorMetrics()


@pytest.fixture
def ex(stack_env: StackEnv, metrics: CollectorMetrics, make_executor: MakeExecutor) -> SshExecutor:
    return make_executor(stack_settings(stack_env), metrics=metrics)


@pytest.fixture
def demo(stack_env: StackEnv) -> list[HostSpec]:
    settings = stack_settings(stack_env)
    inventory = Inventory.load(settings.inventory, settings)
    return [inventory.resolve(Target(h.name)) for h in stack_env.ssh_hosts]


async def test_ok_on_every_host(ex: SshExecutor, demo: list[HostSpec]) -> None:
    req = request("uname -a")
    results = await asyncio.gather(*(ex.run(h, req, collector="c1") for h in demo))
    for host, r in zip(demo, results, strict=True):
        assert r.status == "ok", r.error
        assert (r.host, r.port, r.user, r.attempt) == (host.name, host.port, host.user, 1)
        assert r.exit_status == 0
        assert r.stdout_data.startswith(b"Linux ")
        assert r.stderr_data == b""
        assert r.error is None
        assert r.collector == "c1"
        assert r.request_id == req.request_id
        assert r.finished_at >= r.started_at
        schemas.decode_result(schemas.encode(r))  # a valid fleetrun.result/1


async def test_non_zero_exit_is_failed(ex: SshExecutor, demo: list[HostSpec]) -> None:
    r = await ex.run(demo[0], request("echo out; echo err >&2; exit 3"), collector="c")
    assert (r.status, r.exit_status, r.exit_signal) == ("failed", 3, None)
    assert (r.stdout_data, r.stderr_data) == (b"out\n", b"err\n")


async def test_killed_by_a_signal_is_failed(ex: SshExecutor, demo: list[HostSpec]) -> None:
    r = await ex.run(demo[0], request("kill -TERM $$"), collector="c")
    assert (r.status, r.exit_status, r.exit_signal) == ("failed", None, "TERM")


async def test_env_is_passed_as_ssh_environment(ex: SshExecutor, demo: list[HostSpec]) -> None:
    env = {"FLEETRUN_A": 'it\'s a "value" with $dollar; and `ticks`', "FLEETRUN_B": "2"}
    r = await ex.run(
        demo[0], request('printf %s "$FLEETRUN_A|$FLEETRUN_B"', env=env), collector="c"
    )
    assert r.status == "ok"
    assert r.stdout_data == (env["FLEETRUN_A"] + "|2").encode()


async def test_stdin_is_closed(ex: SshExecutor, demo: list[HostSpec]) -> None:
    r = await ex.run(demo[0], request("cat; echo done", timeout_s=5), collector="c")
    assert (r.status, r.stdout_data) == ("ok", b"done\n")


async def test_non_utf8_and_nul_output_round_trips(ex: SshExecutor, demo: list[HostSpec]) -> None:
    r = await ex.run(
        demo[0], request(r"printf '\000\377\376a\n'; printf 'caf\303\251' >&2"), collector="c"
    )
    assert r.status == "ok"
    assert r.stdout_data == b"\x00\xff\xfea\n"
    assert r.stderr_data == "café".encode()
    doc = schemas.as_document(r)
    assert (doc["stdout_encoding"], doc["stderr_encoding"]) == ("base64", "utf-8")
    back = schemas.decode_result(schemas.encode(r))
    assert back == r


async def test_timeout_kills_the_whole_command(
    stack_env: StackEnv, ex: SshExecutor, demo: list[HostSpec]
) -> None:
    m = marker()
    # A background child too: the signal reaches the session's whole process group.
    cmd = f"echo started; sleep {m} & sleep {m}; echo never"
    r = await ex.run(demo[0], request(cmd, timeout_s=1.5), collector="c")
    assert r.status == "timeout"
    assert r.exit_status is None
    assert r.stdout_data == b"started\n"  # what was printed before the timeout is kept
    assert r.error is not None
    assert r.error.type == "CommandTimeout"
    assert "sent TERM" in r.error.message
    assert 1500 <= r.duration_ms < 1500 + 5000
    await wait_gone(stack_env.ssh_user, f"sleep {m}")


async def test_a_command_ignoring_term_gets_kill(
    stack_env: StackEnv, demo: list[HostSpec], make_executor: MakeExecutor
) -> None:
    e = make_executor(stack_settings(stack_env, ssh_kill_grace_s=0.5))
    m = marker()
    r = await e.run(demo[1], request(f"trap '' TERM; sleep {m}", timeout_s=1), collector="c")
    assert r.status == "timeout"
    assert r.error is not None
    assert "sent KILL" in r.error.message
    assert r.exit_signal == "KILL"
    await wait_gone(stack_env.ssh_user, f"sleep {m}")


async def test_cancellation_kills_the_remote_command(
    stack_env: StackEnv, ex: SshExecutor, demo: list[HostSpec]
) -> None:
    m = marker()
    task = asyncio.create_task(ex.run(demo[2], request(f"sleep {m}"), collector="c"))
    pids = await wait_running(stack_env.ssh_user, f"sleep {m}")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        await wait_gone(stack_env.ssh_user, f"sleep {m}")
    finally:
        kill_pids(remote_pids(stack_env.ssh_user, f"sleep {m}") or pids)
    assert ex.pool_stats()["channels"] == 0


async def test_second_request_reuses_the_pooled_connection(
    ex: SshExecutor, metrics: CollectorMetrics, demo: list[HostSpec]
) -> None:
    first = await ex.run(demo[0], request("true"), collector="c")
    second = await ex.run(demo[0], request("true"), collector="c")
    assert (first.status, second.status) == ("ok", "ok")
    stats = ex.pool_stats()
    assert (stats["open"], stats["new_total"], stats["reused_total"]) == (1, 1, 1)
    name = "fleetrun_collector_connections_total"
    assert metric(metrics, name, {"kind": "new"}) == 1
    assert metric(metrics, name, {"kind": "reused"}) == 1
    assert metric(metrics, "fleetrun_collector_open_connections") == 1
    assert metric(metrics, "fleetrun_collector_connect_seconds_count") == 1
    assert metric(metrics, "fleetrun_collector_command_seconds_count") == 2


async def test_channels_per_connection_and_one_connect_at_a_time(
    stack_env: StackEnv, demo: list[HostSpec], make_executor: MakeExecutor
) -> None:
    e = make_executor(stack_settings(stack_env, max_sessions_per_connection=2))
    results = await asyncio.gather(
        *(e.run(demo[0], request("sleep 0.3"), collector="c") for _ in range(6))
    )
    stats = e.pool_stats()
    assert {r.status for r in results} == {"ok"}
    assert (stats["new_total"], stats["open"], stats["reused_total"]) == (3, 3, 3)


async def test_global_session_cap(
    stack_env: StackEnv, demo: list[HostSpec], make_executor: MakeExecutor
) -> None:
    metrics = CollectorMetrics()
    e = make_executor(stack_settings(stack_env, max_sessions=2), metrics=metrics)
    seen: list[float] = []
    started: list[tuple[str, int]] = []

    async def on_start(host: HostSpec, attempt: int) -> None:
        started.append((host.name, attempt))
        seen.append(metric(metrics, "fleetrun_collector_inflight_sessions"))

    req = request("sleep 0.2")
    results = await asyncio.gather(
        *(e.run(h, req, collector="c", on_start=on_start) for h in demo * 2)
    )
    assert {r.status for r in results} == {"ok"}
    assert sorted(started) == sorted((h.name, 1) for h in demo * 2)
    assert max(seen) <= 2
    assert metric(metrics, "fleetrun_collector_inflight_sessions") == 0


async def test_on_start_failure_propagates_and_nothing_runs(
    stack_env: StackEnv, ex: SshExecutor, demo: list[HostSpec]
) -> None:
    m = marker()

    async def on_start(host: HostSpec, attempt: int) -> None:
        raise RuntimeError("ledger unavailable")

    with pytest.raises(RuntimeError, match="ledger unavailable"):
        await ex.run(demo[0], request(f"sleep {m}"), collector="c", on_start=on_start)
    assert remote_pids(stack_env.ssh_user, f"sleep {m}") == []
    assert ex.pool_stats()["channels"] == 0


async def test_openssh_leaves_a_command_running_when_only_its_channel_closes(
    stack_env: StackEnv,
) -> None:
    """Why timeouts send signals: without a pty, sshd does not end a command when its channel
    closes (it does not even confirm the close while the command runs), nor when the whole
    connection closes."""
    demo1 = stack_env.ssh_hosts[0]
    m = marker()
    pids: list[int] = []
    try:
        async with asyncssh.connect(
            demo1.address,
            demo1.port,
            username=stack_env.ssh_user,
            client_keys=[str(stack_env.client_key)],
            known_hosts=str(stack_env.known_hosts),
            config=[],
        ) as conn:
            process = await conn.create_process(f"exec sleep {m}", encoding=None)
            pids = await wait_running(stack_env.ssh_user, f"sleep {m}")
            process.close()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await process.wait_closed()
        with pytest.raises(AssertionError, match="still running"):
            await wait_gone(stack_env.ssh_user, f"sleep {m}", timeout_s=1.0)
    finally:
        kill_pids(remote_pids(stack_env.ssh_user, f"sleep {m}") or pids)
