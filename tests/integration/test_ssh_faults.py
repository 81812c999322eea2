"""SshExecutor under adversity: unreachable and silent hosts, bad credentials and host keys,
dead pooled connections, retries. Real sshd, a connection-cutting proxy, a blackhole netns."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from collector.inventory import HostSpec
from collector.metrics import CollectorMetrics
from stack.env import StackEnv
from tests.support.net import free_port
from tests.support.netns import Blackhole, blackhole_namespace
from tests.support.sshd import keygen
from tests.support.sshexec import (
    MakeExecutor,
    host_key_line,
    kill_pids,
    known_hosts_with,
    marker,
    metric,
    remote_pids,
    request,
    stack_host,
    stack_settings,
    wait_running,
)
from tests.support.tcpproxy import TcpProxy


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    with blackhole_namespace() as bh:
        yield bh


@pytest.fixture
async def proxy(stack_env: StackEnv) -> AsyncIterator[TcpProxy]:
    demo1 = stack_env.ssh_hosts[0]
    async with TcpProxy(demo1.address, demo1.port) as p:
        yield p


def via_proxy(stack_env: StackEnv, proxy: TcpProxy, tmp_path: Path) -> HostSpec:
    """demo1 reached through the proxy (its key listed for the proxy's address)."""
    known = known_hosts_with(
        stack_env,
        tmp_path / "known_hosts",
        f"[{proxy.host}]:{proxy.port} {host_key_line(stack_env, 'demo1')}",
    )
    return HostSpec(
        "demo1-via-proxy", proxy.host, proxy.port, stack_env.ssh_user, known_hosts=known
    )


def consume(path: Path) -> str:
    """The file's text ("" when absent); the file is removed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ""
    path.unlink()
    return text


async def test_closed_port_is_unreachable(stack_env: StackEnv, make_executor: MakeExecutor) -> None:
    e = make_executor(stack_settings(stack_env))
    host = HostSpec("closed", "127.0.0.1", free_port(), stack_env.ssh_user)
    r = await e.run(host, request("true"), collector="c")
    assert r.status == "unreachable"
    assert r.error is not None
    assert "refused" in r.error.message.lower()
    assert (r.exit_status, r.attempt, r.port) == (None, 1, host.port)


async def test_blackhole_is_unreachable_within_the_connect_timeout(
    stack_env: StackEnv, blackhole: Blackhole, make_executor: MakeExecutor
) -> None:
    e = make_executor(stack_settings(stack_env))
    host = HostSpec("blackhole", blackhole.address, 22, stack_env.ssh_user)
    t0 = time.monotonic()
    r = await e.run(host, request("true", connect_timeout_s=1.0), collector="c")
    elapsed = time.monotonic() - t0
    assert r.status == "unreachable"
    assert r.error is not None
    assert 0.9 <= elapsed < 1.0 + 1.5  # the connect timeout, plus a margin for a busy box


async def test_tcp_without_ssh_is_unreachable_within_the_connect_timeout(
    stack_env: StackEnv, make_executor: MakeExecutor
) -> None:
    """A host that accepts TCP and never speaks SSH (a hung sshd, a wrong service)."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    e = make_executor(stack_settings(stack_env))
    t0 = time.monotonic()
    try:
        r = await e.run(
            HostSpec("mute", "127.0.0.1", port, "u"),
            request("true", connect_timeout_s=1.0),
            collector="c",
        )
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()
    assert r.status == "unreachable"
    assert accepted  # the TCP connection was made: only the SSH deadline saved us
    assert time.monotonic() - t0 < 1.0 + 1.5


async def test_unreachable_is_retried_with_backoff(
    stack_env: StackEnv, make_executor: MakeExecutor
) -> None:
    e = make_executor(stack_settings(stack_env, retry_backoff_s=0.2, retry_backoff_max_s=1.0))
    host = HostSpec("closed", "127.0.0.1", free_port(), stack_env.ssh_user)
    calls: list[int] = []

    async def on_start(h: HostSpec, attempt: int) -> None:
        calls.append(attempt)

    t0 = time.monotonic()
    r = await e.run(host, request("true", retries=2), collector="c", on_start=on_start)
    assert (r.status, r.attempt) == ("unreachable", 3)
    assert time.monotonic() - t0 >= 0.1 + 0.2  # at least half of each backoff ceiling
    assert calls == []  # nothing ever started
    assert e.pool_stats()["new_total"] == 0


async def test_a_started_command_is_never_rerun(
    stack_env: StackEnv, make_executor: MakeExecutor
) -> None:
    e = make_executor(stack_settings(stack_env))
    calls: list[int] = []

    async def on_start(h: HostSpec, attempt: int) -> None:
        calls.append(attempt)

    r = await e.run(
        stack_host(stack_env), request("exit 1", retries=3), collector="c", on_start=on_start
    )
    assert (r.status, r.attempt, calls) == ("failed", 1, [1])


async def test_connection_lost_mid_command_is_an_error_and_not_rerun(
    stack_env: StackEnv, proxy: TcpProxy, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    host = via_proxy(stack_env, proxy, tmp_path)
    e = make_executor(stack_settings(stack_env))
    m = marker()
    trace = Path(f"/tmp/fleetrun-test-{uuid.uuid4().hex}")
    # The collector closes the command's stdin only once the server has confirmed the exec
    # request, so the `sleep` process (not the shell, whose command line also holds "sleep m")
    # running means the collector knows the command started: the cut cannot race the
    # confirmation (that case is "opening the session failed", and not re-run either).
    cmd = f"cat > /dev/null; echo ran >> {trace}; sleep {m}"
    try:
        task = asyncio.create_task(e.run(host, request(cmd, retries=3), collector="c"))
        pids = await wait_running(stack_env.ssh_user, f"^sleep {m}$")
        proxy.cut()
        r = await asyncio.wait_for(task, 10)
    finally:
        kill_pids(remote_pids(stack_env.ssh_user, f"sleep {m}"))
        trace_text = consume(trace)
    assert pids
    assert (r.status, r.attempt) == ("error", 1)
    assert r.error is not None
    assert "ended before it exited" in r.error.message
    assert trace_text == "ran\n"  # ran exactly once


async def test_dead_pooled_connection_is_replaced_transparently(
    stack_env: StackEnv, proxy: TcpProxy, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    host = via_proxy(stack_env, proxy, tmp_path)
    metrics = CollectorMetrics()
    e = make_executor(stack_settings(stack_env), metrics=metrics)
    first = await e.run(host, request("true"), collector="c")
    assert first.status == "ok"
    # Reset the pooled connection and ask again before the event loop has seen the RST:
    # the pool still hands it out, the session cannot open, the executor reconnects once.
    assert proxy.cut() == 1
    second = await e.run(host, request("echo again"), collector="c")
    assert (second.status, second.stdout_data, second.attempt) == ("ok", b"again\n", 1)
    assert second.error is None
    stats = e.pool_stats()
    assert (stats["replaced_total"], stats["new_total"]) == (1, 2)
    assert metric(metrics, "fleetrun_collector_connections_replaced_total") == 1


async def test_silently_dead_pooled_connection_is_replaced(
    stack_env: StackEnv, proxy: TcpProxy, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    host = via_proxy(stack_env, proxy, tmp_path)
    e = make_executor(stack_settings(stack_env))
    assert (await e.run(host, request("true"), collector="c")).status == "ok"
    proxy.freeze()  # the old link goes silent (no RST, no FIN); new links still work
    t0 = time.monotonic()
    r = await e.run(host, request("echo again", connect_timeout_s=1.0), collector="c")
    elapsed = time.monotonic() - t0
    assert (r.status, r.stdout_data) == ("ok", b"again\n")
    assert e.pool_stats()["replaced_total"] == 1
    assert 1.0 <= elapsed < 1.0 + 3.0  # one session-open deadline, then a fresh connection


async def test_key_not_authorized_is_auth_failed(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    stranger = keygen(tmp_path / "stranger")
    e = make_executor(stack_settings(stack_env, ssh_client_keys=(stranger,)))
    r = await e.run(stack_host(stack_env), request("true"), collector="c")
    assert r.status == "auth_failed"
    assert r.error is not None
    assert r.error.type == "PermissionDenied"


async def test_missing_key_file_is_an_error(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    e = make_executor(stack_settings(stack_env, ssh_client_keys=(tmp_path / "nope",)))
    r = await e.run(stack_host(stack_env), request("true", retries=2), collector="c")
    assert (r.status, r.attempt) == ("error", 1)
    assert r.error is not None
    assert "nope" in r.error.message


async def test_unknown_host_key_is_a_mismatch(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    e = make_executor(stack_settings(stack_env, ssh_known_hosts=empty))
    r = await e.run(stack_host(stack_env), request("true"), collector="c")
    assert r.status == "host_key_mismatch"
    assert r.error is not None
    assert r.error.type == "HostKeyNotVerifiable"


async def test_changed_host_key_is_a_mismatch(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    impostor = keygen(tmp_path / "impostor")
    key = " ".join((tmp_path / "impostor.pub").read_text().split()[:2])
    demo1 = stack_env.ssh_hosts[0]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{demo1.name}]:{demo1.port},[{demo1.address}]:{demo1.port} {key}\n")
    assert impostor.exists()
    e = make_executor(stack_settings(stack_env, ssh_known_hosts=wrong))
    r = await e.run(stack_host(stack_env), request("true"), collector="c")
    assert r.status == "host_key_mismatch"


async def test_verification_off_connects_and_warns_loudly(
    stack_env: StackEnv,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    make_executor: MakeExecutor,
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    settings = stack_settings(stack_env, ssh_known_hosts=empty, ssh_verify_host_keys=False)
    with caplog.at_level(logging.WARNING, logger="fleetrun.collector.ssh"):
        e = make_executor(settings)
        r = await e.run(stack_host(stack_env), request("true"), collector="c")
    assert r.status == "ok"
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any("WITHOUT host key verification" in w for w in warnings)
    assert any("VERIFICATION IS OFF" in w for w in warnings)


async def test_host_spec_user_overrides(stack_env: StackEnv, make_executor: MakeExecutor) -> None:
    """A user the host does not allow (AllowUsers) is refused like a wrong key."""
    e = make_executor(stack_settings(stack_env))
    host = replace(stack_host(stack_env), user="nobody")
    r = await e.run(host, request("true"), collector="c")
    assert (r.status, r.user) == ("auth_failed", "nobody")
