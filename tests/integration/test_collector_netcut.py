"""The collector cut off from its hosts for 10 s mid-request: every command runs at most once,
every host is reported, nothing is left running on the hosts.

The hosts are the stack's sshd hosts, each reached through a TcpProxy that `freeze()`s: every
byte on the live connections is held, as a network that drops everything would (the hosts
listen on loopback, where no route or namespace of ours can separate them from the collector
without cutting Kafka too). Commands count their real executions in a marker file (`counted`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from schemas import Request
from stack.env import StackEnv
from tests.support.collector import (
    collector_settings,
    counted,
    counts_by_host,
    finished,
    read_until,
    running_collector,
    runs,
    ssh_all,
    submit,
    wait_runs,
)
from tests.support.kafka import Topics
from tests.support.records import make_counts
from tests.support.tcpproxy import TcpProxy

CUT_S = 10.0
DEMO = ("demo1", "demo2", "demo3")


@pytest.fixture
async def proxies(stack_env: StackEnv) -> AsyncIterator[dict[str, TcpProxy]]:
    """A freezable proxy in front of each sshd host."""
    async with contextlib.AsyncExitStack() as stack:
        yield {
            h.name: await stack.enter_async_context(TcpProxy(h.address, h.port))
            for h in stack_env.ssh_hosts
        }


def _relayed_inventory(
    stack_env: StackEnv, proxies: dict[str, TcpProxy], tmp_path: Path
) -> tuple[Path, Path]:
    """An inventory that reaches every sshd host through its proxy, and the known_hosts that
    gives each proxy's address its host's key."""
    keys: dict[str, list[str]] = {}
    for line in stack_env.known_hosts.read_text().splitlines():
        patterns, _, key = line.partition(" ")
        for h in stack_env.ssh_hosts:
            if f"[{h.address}]:{h.port}" in patterns.split(","):
                keys.setdefault(h.name, []).append(key)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        "".join(f"[{p.host}]:{p.port} {k}\n" for name, p in proxies.items() for k in keys[name])
    )
    inventory = tmp_path / "inventory.toml"
    hosts = "".join(
        f'{name} = {{ address = "{p.host}", port = {p.port} }}\n' for name, p in proxies.items()
    )
    inventory.write_text(
        f'[defaults]\nuser = "{stack_env.ssh_user}"\n\n[hosts]\n{hosts}\n'
        f"[groups]\ndemo = {list(proxies)!r}\n".replace("'", '"')
    )
    return inventory, known_hosts


async def _processes(stack_env: StackEnv, mark: str) -> list[str]:
    outs = await ssh_all(stack_env, "ps -eo pid=,args=")
    return sorted({line for out in outs.values() for line in out.splitlines() if mark in line})


async def test_cut_off_from_the_hosts_for_10s_mid_request(
    topics: Topics,
    stack_env: StackEnv,
    remote_tag: str,
    proxies: dict[str, TcpProxy],
    tmp_path: Path,
) -> None:
    inventory, known_hosts = _relayed_inventory(stack_env, proxies, tmp_path)
    settings = collector_settings(topics.prefix, inventory=inventory, ssh_known_hosts=known_hosts)
    request = Request.new(
        principal="tests",
        command=counted("cut", remote_tag, "sleep 4; echo done"),
        targets=("@demo",),
        concurrency=3,
    )
    async with running_collector(settings):
        await submit(topics.bootstrap, topics["requests"], [request])
        await wait_runs(stack_env, remote_tag, ["cut"], 3)
        # Every command runs; from now on nothing passes between the collector and the hosts.
        assert {name: p.live for name, p in proxies.items()} == dict.fromkeys(DEMO, 1)
        for p in proxies.values():
            p.freeze()
        # The commands finish on the hosts during the cut; their results cannot get through.
        cut_ends = asyncio.get_running_loop().time() + CUT_S
        during = await read_until(
            topics.bootstrap,
            topics.prefix,
            lambda _: asyncio.get_running_loop().time() >= cut_ends,
            timeout_s=CUT_S + 10,
        )
        for p in proxies.values():
            p.thaw()
        seen = await read_until(
            topics.bootstrap, topics.prefix, finished(request.request_id), timeout_s=60
        )
    assert during.for_request(request.request_id)[0] == []  # the cut held every result
    assert await runs(stack_env, "cut", remote_tag) == dict.fromkeys(DEMO, 1)  # at most once
    results, _ = seen.for_request(request.request_id)
    assert counts_by_host(results) == dict.fromkeys(DEMO, 1)  # every host reported, once
    assert {r.status for r in results} == {"ok"}  # the connections outlived the cut
    completed = seen.completed(request.request_id)
    assert completed is not None
    assert completed.counts == make_counts(ok=3)
    try:
        async with asyncio.timeout(20):
            while await _processes(stack_env, f"fleetrun-cut-{remote_tag}"):  # noqa: ASYNC110
                await asyncio.sleep(0.2)  # polling the hosts' processes
    except TimeoutError:
        left = await _processes(stack_env, f"fleetrun-cut-{remote_tag}")
        raise AssertionError(f"orphans on the hosts: {left}") from None
