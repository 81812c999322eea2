"""Confinement to the inventory: which targets run by default, which overrides others use, and
the message that names the target and the rule (collector.confine)."""

from __future__ import annotations

from pathlib import Path

import pytest

import schemas
from collector.confine import OVERRIDES, TargetNotAllowed, request_overrides
from collector.fanout import plan_request
from collector.inventory import Inventory
from collector.kafka import Topics
from collector.settings import CollectorSettings
from schemas import TargetError, expand_targets, known
from tests.support.fakes import FakeExecutor, FakePublisher, FakeRecord, fake_handler
from tests.support.records import make_request

INVENTORY = """
[defaults]
user = "fleetrun"

[hosts.demo1]
address = "127.0.11.1"
port = 2222

[hosts.demo2]
address = "127.0.11.2"
port = 2222
user = "deploy"

[hosts.bastion]
address = "10.1.0.1"

[hosts.db]
address = "192.168.0.5"
jump = "bastion"

[groups]
demo = ["demo1", "demo2"]
web = ["web[01-03]"]
lab = ["admin@lab1:2200"]
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    (tmp_path / "inventory.toml").write_text(INVENTORY)
    return Inventory.load(tmp_path / "inventory.toml", CollectorSettings(ssh_user="ops"))


def _plan(inventory: Inventory, targets: list[str], allow: tuple[str, ...] = ()) -> list[str]:
    plan = plan_request(make_request(targets=targets), inventory, allow_targets=allow)  # type: ignore[arg-type]
    return [str(p.target) for p in plan.hosts]


@pytest.mark.parametrize(
    "targets",
    [
        ["demo1"],
        ["@demo"],
        ["web02"],  # a group member, named directly
        ["@web", "!web01"],
        ["@lab"],  # the group spells its own user and port: the operator's, not the request's
        ["admin@lab1:2200"],  # the same spelling, named directly
        ["fleetrun@demo1:2222", "deploy@demo2", "demo2:2222"],  # what the inventory says
        ["127.0.11.1:2222"],  # a host's address, reached directly, on the host's port
        ["deploy@127.0.11.2:2222"],  # ... and demo2's address with demo2's user
    ],
)
def test_inventory_hosts_groups_and_their_own_endpoints_run(
    inventory: Inventory, targets: list[str]
) -> None:
    assert _plan(inventory, targets)


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        (
            ["root@demo1"],
            "target 'root@demo1' sets the login user; this collector takes users from the "
            "inventory (allow with FLEETRUN_COLLECTOR_ALLOW_TARGETS=user)",
        ),
        (
            ["demo1:22"],
            "target 'demo1:22' sets the port; this collector takes ports from the inventory "
            "(allow with FLEETRUN_COLLECTOR_ALLOW_TARGETS=port)",
        ),
        (
            ["10.9.9.9"],
            "target '10.9.9.9' is not in this collector's inventory (a host, a group member, "
            "or a host's own address, user and port); "
            "this collector runs commands only on inventory hosts "
            "(allow with FLEETRUN_COLLECTOR_ALLOW_TARGETS=outside_inventory)",
        ),
        (
            ["@demo", "fleetrun@127.0.0.1:22", "localhost:22"],
            "target 'fleetrun@127.0.0.1:22' is not in this collector's inventory (a host, a "
            "group member, or a host's own address, user and port), sets the login user and "
            "sets the port; this collector runs commands only on inventory hosts, takes users "
            "from the inventory and takes ports from the inventory "
            "(allow with FLEETRUN_COLLECTOR_ALLOW_TARGETS=outside_inventory,user,port)"
            " (and 1 more refused target(s))",
        ),
        # an address behind a jump host, named raw, would be reached another way
        (["192.168.0.5"], "target '192.168.0.5' is not in this collector's inventory"),
        # demo1's address without demo1's port: port 22 there is not an inventory endpoint
        (["127.0.11.1"], "target '127.0.11.1' is not in this collector's inventory"),
        (["127.0.11.1:22"], "target '127.0.11.1:22' sets the port"),
        (["root@127.0.11.1:2222"], "target 'root@127.0.11.1:2222' sets the login user"),
        (["lab1:22"], "target 'lab1:22' sets the port"),  # the group gives lab1 port 2200
    ],
)
def test_overrides_are_refused_by_default_naming_target_and_rule(
    inventory: Inventory, targets: list[str], problem: str
) -> None:
    with pytest.raises(TargetNotAllowed) as caught:
        _plan(inventory, targets)
    assert caught.value.path == "targets"
    assert caught.value.problem.startswith(problem)
    assert isinstance(caught.value, TargetError)  # rejected like any other bad target


@pytest.mark.parametrize(
    ("targets", "allow"),
    [
        (["root@demo1"], ("user",)),
        (["demo1:22"], ("port",)),
        (["10.9.9.9", "@demo"], ("outside_inventory",)),
        (["root@10.9.9.9:2200"], OVERRIDES),
    ],
)
def test_the_operator_allows_each_override(
    inventory: Inventory, targets: list[str], allow: tuple[str, ...]
) -> None:
    assert _plan(inventory, targets, allow)


def test_allowing_one_override_does_not_allow_another(inventory: Inventory) -> None:
    with pytest.raises(TargetNotAllowed, match=r"'root@demo1:22' sets the port;.*=port\)"):
        _plan(inventory, ["root@demo1:22"], ("user",))
    with pytest.raises(TargetNotAllowed, match=r"'root@10\.9\.9\.9' sets the login user"):
        _plan(inventory, ["root@10.9.9.9"], ("outside_inventory",))


def test_request_overrides_say_which_target_uses_which(inventory: Inventory) -> None:
    targets = expand_targets(["@demo", "root@demo1", "demo2:22", "x@10.9.9.9"], inventory.groups)
    overrides = request_overrides(targets, inventory.listing)
    assert [(str(t.target), t.uses) for t in overrides.targets] == [
        ("root@demo1", ("user",)),
        ("demo2:22", ("port",)),
        ("x@10.9.9.9", ("outside_inventory", "user")),
    ]
    assert overrides.kinds == {"outside_inventory", "user", "port"}
    assert [str(t.target) for t in overrides.refused({"user", "port"})] == ["x@10.9.9.9"]
    assert (
        request_overrides(expand_targets(["@demo"], inventory.groups), inventory.listing).kinds
        == set()
    )


def test_an_empty_inventory_runs_nothing_by_default() -> None:
    empty = Inventory.load(None, CollectorSettings())
    with pytest.raises(TargetNotAllowed, match="not in this collector's inventory"):
        plan_request(make_request(targets=["web1"]), empty)


async def test_a_refused_request_is_rejected_and_dead_lettered_and_runs_nowhere() -> None:
    publisher = FakePublisher()
    executor = FakeExecutor()
    topics = Topics.from_prefix("t.")
    handler = fake_handler(publisher, executor, topics=topics)
    request = make_request(targets=["@web", "root@web1"])
    raw = schemas.encode(request)
    record = FakeRecord(raw, key=b"key", topic="t.requests", partition=0, offset=7)
    assert await handler.handle(record) == "rejected"
    assert executor.started == []
    assert publisher.results(topics.results) == []
    (status,) = publisher.statuses(topics.status)
    assert status.state == "rejected"
    assert "target 'root@web1' sets the login user" in (known(status.reason) or "")
    (letter,) = publisher.dead_letters(topics.dlq)
    assert letter.value == raw
    assert "FLEETRUN_COLLECTOR_ALLOW_TARGETS=user" in letter.error.message
