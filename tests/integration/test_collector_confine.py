"""Confinement and the environment deny-list against real Kafka and the stack's real sshd hosts:
a target with its own user or port, an address outside the inventory, and `LD_PRELOAD` each run
nowhere (the command would leave a marker on the host it reached) and are rejected with the
target or variable and the rule; the operator's setting lets the same targets run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

import schemas
from schemas import Request, known
from stack.env import StackEnv
from tests.support.collector import (
    collector_settings,
    counted,
    finished,
    read_until,
    running_collector,
    runs,
    submit,
)
from tests.support.kafka import Topics


def _one_host_inventory(stack_env: StackEnv, tmp_path: Path) -> Path:
    """An inventory listing demo1 only: demo2, a real sshd host beside it, is outside it."""
    demo1 = stack_env.ssh_hosts[0]
    path = tmp_path / "inventory.toml"
    path.write_text(
        f'[defaults]\nuser = "{stack_env.ssh_user}"\n\n'
        f'[hosts.{demo1.name}]\naddress = "{demo1.address}"\nport = {demo1.port}\n'
    )
    return path


def _request(command: str, target: str) -> Request:
    return Request.new(principal="tests", command=command, targets=[target])


async def test_overrides_and_outside_addresses_run_nowhere_and_say_why(
    topics: Topics, stack_env: StackEnv, remote_tag: str, tmp_path: Path
) -> None:
    demo1, demo2 = stack_env.ssh_hosts[:2]
    user = stack_env.ssh_user
    cases = {
        # target → the words of the rejection
        "root@demo1": "target 'root@demo1' sets the login user; this collector takes users "
        "from the inventory (allow with FLEETRUN_COLLECTOR_ALLOW_TARGETS=user)",
        "demo1:22": "target 'demo1:22' sets the port; this collector takes ports from the "
        "inventory (allow with FLEETRUN_COLLECTOR_ALLOW_TARGETS=port)",
        f"{user}@{demo2.address}:{demo2.port}": f"target '{user}@{demo2.address}:{demo2.port}' "
        "is not in this collector's inventory",
        f"{user}@localhost:{demo1.port}": "is not in this collector's inventory",
    }
    requests = {
        target: _request(counted("confined", remote_tag, "true"), target) for target in cases
    }
    allowed = _request(counted("allowed", remote_tag, "true"), "demo1")  # the control: it runs
    settings = collector_settings(topics.prefix, inventory=_one_host_inventory(stack_env, tmp_path))
    async with running_collector(settings):
        await submit(topics.bootstrap, topics["requests"], [*requests.values(), allowed])
        ids = [r.request_id for r in (*requests.values(), allowed)]
        seen = await read_until(topics.bootstrap, topics.prefix, finished(*ids))
    for target, words in cases.items():
        rid = requests[target].request_id
        results, statuses = seen.for_request(rid)
        assert results == [], target
        assert [s.state for s in statuses] == ["rejected"], target
        assert words in (known(statuses[0].reason) or ""), (target, statuses[0].reason)
        assert [d.request_id for d in seen.dead_letters if d.request_id == rid] == [rid]
    assert seen.states(allowed.request_id) == ["accepted", "completed"]
    # Nothing ran anywhere for the refused ones; the control ran on demo1 once.
    assert set((await runs(stack_env, "confined", remote_tag)).values()) == {0}
    assert (await runs(stack_env, "allowed", remote_tag))[demo1.name] == 1


async def test_the_operator_setting_allows_each_override(
    topics: Topics, stack_env: StackEnv, remote_tag: str, tmp_path: Path
) -> None:
    demo2 = stack_env.ssh_hosts[1]
    target = f"{stack_env.ssh_user}@{demo2.address}:{demo2.port}"
    request = _request(counted("outside", remote_tag, "true"), target)
    settings = collector_settings(
        topics.prefix,
        inventory=_one_host_inventory(stack_env, tmp_path),
        allow_targets=("outside_inventory", "user", "port"),
    )
    async with running_collector(settings):
        await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
    results, _ = seen.for_request(request.request_id)
    assert [r.status for r in results] == ["ok"]
    assert (await runs(stack_env, "outside", remote_tag))[demo2.name] == 1


async def test_ld_preload_in_env_runs_nowhere_and_names_the_variable(
    topics: Topics, stack_env: StackEnv, remote_tag: str
) -> None:
    # Another producer than ours: the codec refuses to build such a request, so write the bytes.
    good = _request(counted("preload", remote_tag, "true"), "@demo")
    doc: dict[str, Any] = schemas.as_document(good) | {"env": {"LD_PRELOAD": "/tmp/evil.so"}}
    async with running_collector(collector_settings(topics.prefix)):
        await submit(topics.bootstrap, topics["requests"], [orjson.dumps(doc)], key=b"k")
        seen = await read_until(
            topics.bootstrap, topics.prefix, lambda s: bool(s.dead_letters and s.statuses)
        )
    (status,) = seen.statuses
    assert (status.request_id, status.state) == (good.request_id, "rejected")
    assert (known(status.reason) or "").endswith(
        "env.LD_PRELOAD: changes how programs load or start and is not allowed in a request "
        '(schemas/README.md, "Environment")'
    )
    (letter,) = seen.dead_letters
    assert "env.LD_PRELOAD" in letter.error.message
    assert set((await runs(stack_env, "preload", remote_tag)).values()) == {0}
