"""Fan-out planning: targets that reach the same endpoint are one host (run once, counted once).

The endpoint is what the collector's inventory resolves a target to (address, port, user, and
the jump route), never the spelling: `demo1`, `fleetrun@demo1` and `127.0.11.1:2222` are one
host in the stack-style inventory below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

import schemas
from collector.confine import OVERRIDES, InventoryListing
from collector.fanout import endpoint_key, plan_request
from collector.inventory import Inventory
from collector.kafka import Topics
from collector.settings import CollectorSettings
from schemas import Request, Target, known
from tests.support.fakes import (
    FakeExecutor,
    FakeHost,
    FakeInventory,
    FakePublisher,
    FakeRecord,
    fake_handler,
)
from tests.support.records import make_counts, make_request

STACK_STYLE = """
[defaults]
user = "fleetrun"

[hosts.demo1]
address = "127.0.11.1"
port = 2222

[hosts.demo2]
address = "127.0.11.2"
port = 2222

[hosts.bastion-a]
address = "10.1.0.1"

[hosts.bastion-b]
address = "10.2.0.1"

[hosts.db-a]
address = "192.168.0.5"
jump = "bastion-a"

[hosts.db-b]
address = "192.168.0.5"
jump = "bastion-b"

[hosts.db-a2]
address = "192.168.0.5"
jump = "bastion-a"

[groups]
demo = ["demo1", "demo2"]
"""

SSH_CONFIG = """
Host alias
    HostName 10.9.9.9

Host other-alias
    HostName 10.9.9.9
    Port 2200
"""


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    base = tmp_path_factory.mktemp("inventory")
    (base / "inventory.toml").write_text(STACK_STYLE)
    (base / "ssh_config").write_text(SSH_CONFIG)
    settings = CollectorSettings(ssh_user="fleetrun", ssh_config=base / "ssh_config")
    return Inventory.load(base / "inventory.toml", settings)


def _planned(inventory: Inventory, targets: Sequence[str]) -> list[str]:
    # Spellings outside the inventory, with their own user or port, allowed: this is about
    # which spellings are one endpoint (tests/unit/test_collector_confine.py: which may run).
    plan = plan_request(make_request(targets=targets), inventory, allow_targets=OVERRIDES)
    return [str(p.target) for p in plan.hosts]


@pytest.mark.parametrize(
    ("targets", "planned"),
    [
        # inventory alias, default user, inventory port, the address itself: one host
        (["demo1", "fleetrun@demo1"], ["demo1"]),
        (["demo1", "demo1:2222", "fleetrun@demo1:2222"], ["demo1"]),
        (["127.0.11.1:2222", "demo1"], ["127.0.11.1:2222"]),  # the first spelling is the name
        (["@demo", "demo2", "fleetrun@127.0.11.2:2222"], ["demo1", "demo2"]),
        # the same name as another user or on another port is another endpoint
        (["demo1", "admin@demo1"], ["demo1", "admin@demo1"]),
        (["demo1", "demo1:22"], ["demo1", "demo1:22"]),
        (["demo1", "127.0.11.1"], ["demo1", "127.0.11.1"]),  # port 22, not the inventory's 2222
        # ssh_config HostName: an alias and the address it names
        (["alias", "10.9.9.9"], ["alias"]),
        (["alias", "other-alias"], ["alias", "other-alias"]),  # same address, port 2200
        (["other-alias", "10.9.9.9:2200"], ["other-alias"]),
        # the same private address behind two bastions is two machines; behind one, one
        (["db-a", "db-b"], ["db-a", "db-b"]),
        (["db-a", "db-a2"], ["db-a"]),
        # DNS names compare without case and without the root dot
        (["web.example.com", "WEB.example.com."], ["web.example.com"]),
        # IP addresses compare by value, not by spelling
        (["::1", "0:0::1", "[0::1]:22"], ["::1"]),
    ],
)
def test_targets_are_one_host_per_endpoint(
    inventory: Inventory, targets: list[str], planned: list[str]
) -> None:
    assert _planned(inventory, targets) == planned


@pytest.mark.parametrize(
    ("targets", "planned"),
    [
        (["broken1", "broken1:22"], ["broken1"]),  # no address: compared as spelt, port 22
        (["broken1", "x@broken1"], ["broken1", "x@broken1"]),
        (["broken1", "broken1:2200"], ["broken1", "broken1:2200"]),
        (["web1", "broken1"], ["web1", "broken1"]),  # resolved and unresolved never merge
    ],
)
def test_unresolvable_targets_are_compared_as_spelt(targets: list[str], planned: list[str]) -> None:
    plan = plan_request(make_request(targets=targets), FakeInventory(), allow_targets=OVERRIDES)
    assert [str(p.target) for p in plan.hosts] == planned


def test_the_error_budget_counts_hosts_not_spellings(inventory: Inventory) -> None:
    targets = ["demo1", "fleetrun@demo1", "demo1:2222", "demo2"]
    plan = plan_request(make_request(targets=targets, max_errors="50%"), inventory)
    assert plan.total == 2
    assert plan.budget == 1  # 50% of 2 hosts, not of 4 spellings


def test_the_endpoint_is_address_port_user_and_route() -> None:
    direct = FakeHost("a", 22, "u", address="10.0.0.1")
    assert endpoint_key(
        plan_request(make_request(targets=["x"]), _One(direct), allow_targets=OVERRIDES).hosts[0]
    ) == (("10.0.0.1", 22, "u"),)
    via = FakeHost("a", 22, "u", address="10.0.0.1", jump=FakeHost("j", 2022, "v"))
    assert endpoint_key(
        plan_request(make_request(targets=["x"]), _One(via), allow_targets=OVERRIDES).hosts[0]
    ) == (
        ("10.0.0.1", 22, "u"),
        ("j", 2022, "v"),
    )


@dataclass
class _One:
    """Resolves every target to one host."""

    host: FakeHost
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def listing(self) -> InventoryListing:
        return InventoryListing((), self.groups, self.resolve)

    def resolve(self, target: Target) -> FakeHost:
        return self.host


# Spellings of the stack-style inventory's hosts, with the endpoint each one reaches.
SPELLINGS: dict[str, str] = {
    "demo1": "d1",
    "fleetrun@demo1": "d1",
    "demo1:2222": "d1",
    "127.0.11.1:2222": "d1",
    "fleetrun@127.0.11.1:2222": "d1",
    "demo2": "d2",
    "demo2:2222": "d2",
    "127.0.11.2:2222": "d2",
    "root@demo2": "d2-root",
    "root@127.0.11.2:2222": "d2-root",
    "127.0.11.2": "d2-port22",
}


@given(st.lists(st.sampled_from(sorted(SPELLINGS)), min_size=1, max_size=12))
def test_any_mix_of_spellings_runs_each_endpoint_once_in_first_seen_order(
    inventory: Inventory, spellings: list[str]
) -> None:
    expected: dict[str, str] = {}  # endpoint → its first spelling
    for spelling in spellings:
        expected.setdefault(SPELLINGS[spelling], spelling)
    assert _planned(inventory, spellings) == list(expected.values())


def test_resolved_hosts_keep_the_first_spelling_as_their_name(inventory: Inventory) -> None:
    plan = plan_request(make_request(targets=["127.0.11.1:2222", "demo1"]), inventory)
    (only,) = plan.hosts
    assert only.host is not None
    assert (only.host.name, only.host.address, only.host.port) == ("127.0.11.1", "127.0.11.1", 2222)


async def test_one_host_spelt_twice_is_accepted_run_and_completed_as_one() -> None:
    publisher = FakePublisher()
    executor = FakeExecutor()
    topics = Topics.from_prefix("t.")
    handler = fake_handler(publisher, executor, topics=topics)
    request = Request.new(
        principal="alice", command="hostname", targets=["web1", "deploy@web1:22", "web2"]
    )
    assert await handler.handle(FakeRecord(schemas.encode(request))) == "completed"
    assert executor.started == ["web1", "web2"]
    accepted, completed = publisher.statuses(topics.status)
    assert known(accepted.targets_total) == 2
    assert known(completed.targets_total) == 2
    assert completed.counts == make_counts(ok=2)
    assert sorted(r.host for r in publisher.results(topics.results)) == ["web1", "web2"]
