"""Inventory: parsing, validation errors (file: key: problem), precedence, ssh_config, jumps."""

from __future__ import annotations

import dataclasses
import getpass
from pathlib import Path

import pytest

from collector.inventory import HostSpec, Inventory, InventoryError
from collector.settings import CollectorSettings
from schemas import Target, expand_targets

STACK_STYLE = """
[defaults]
user = "fleetrun"

[hosts.demo1]
address = "127.0.11.1"
port = 2222

[hosts.demo2]
address = "127.0.11.2"
port = 2222

[groups]
demo = ["demo1", "demo2"]
web = ["web[01-03]", "@demo", "!demo2"]
"""


def load(tmp_path: Path, text: str, **settings: object) -> Inventory:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return Inventory.load(path, CollectorSettings(**settings))  # type: ignore[arg-type]


def test_stack_inventory(tmp_path: Path) -> None:
    inv = load(tmp_path, STACK_STYLE, ssh_user="someone")
    assert inv.resolve(Target("demo1")) == HostSpec("demo1", "127.0.11.1", 2222, "fleetrun")
    assert inv.hosts == ("demo1", "demo2")
    names = [t.name for t in expand_targets(["@web"], inv.groups)]
    assert names == ["web01", "web02", "web03", "demo1"]


def test_target_user_and_port_win(tmp_path: Path) -> None:
    inv = load(tmp_path, STACK_STYLE)
    spec = inv.resolve(Target("demo1", user="admin", port=22))
    assert (spec.user, spec.port, spec.address) == ("admin", 22, "127.0.11.1")


def test_unknown_host_falls_back_to_settings_then_ssh_defaults(tmp_path: Path) -> None:
    inv = load(tmp_path, "[groups]\n")
    assert inv.resolve(Target("db7")) == HostSpec("db7", "db7", 22, getpass.getuser())
    inv = load(tmp_path, "", ssh_user="ops", ssh_client_keys=(Path("/k"),))
    spec = inv.resolve(Target("db7"))
    assert (spec.user, spec.client_keys) == ("ops", ())  # () = the collector's default keys


def test_no_inventory_file_is_an_empty_inventory() -> None:
    inv = Inventory.load(None, CollectorSettings(ssh_user="ops"))
    assert inv.groups == {}
    assert inv.resolve(Target("x")).user == "ops"


def test_simfleet_style_inline_tables_and_metadata(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    inv = load(
        tmp_path,
        """
        [defaults]
        user = "sim"
        known_hosts = "known_hosts"
        client_keys = ["keys/client_key"]
        [hosts]
        sim00001 = { address = "127.1.0.1", port = 2200, behaviour = "hang" }
        [groups]
        all = ["sim00001"]
        """,
    )
    spec = inv.resolve(Target("sim00001"))
    assert spec.known_hosts == tmp_path / "known_hosts"
    assert spec.client_keys == (tmp_path / "keys" / "client_key",)
    assert inv.metadata("sim00001") == {"behaviour": "hang"}


def test_jump_hosts(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
        [defaults]
        user = "u"
        jump = "bastion"
        [hosts.bastion]
        address = "10.0.0.1"
        [hosts.inner]
        address = "10.1.0.1"
        jump = "inner-bastion"
        [hosts.inner-bastion]
        address = "10.0.0.2"
        [hosts.direct]
        jump = ""
        """,
    )
    bastion = HostSpec("bastion", "10.0.0.1", 22, "u")
    assert inv.resolve(Target("bastion")).jump is None  # the default jump skips itself
    assert inv.resolve(Target("web1")).jump == bastion
    inner = inv.resolve(Target("inner"))
    assert inner.jump == HostSpec("inner-bastion", "10.0.0.2", 22, "u", jump=bastion)
    assert inv.resolve(Target("direct")).jump is None


def test_jump_loop_is_refused_at_load(tmp_path: Path) -> None:
    text = '[hosts.a]\njump = "b"\n[hosts.b]\njump = "a"\n'
    with pytest.raises(InventoryError, match=r"jump hosts loop: a → b → a"):
        load(tmp_path, text)


SSH_CONFIG = """
Host alias
    HostName 10.9.9.9
    User cfguser
    Port 2200
    IdentityFile /keys/%n_key
    ProxyJump jumper@gate:2022,inner

Host web*
    User webuser
    Port 2201

Host gate inner
    ProxyJump none
"""


def test_ssh_config_is_the_base(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(SSH_CONFIG)
    inv = load(
        tmp_path,
        '[hosts.web1]\nport = 22\n[hosts.inner]\naddress = "10.2.2.2"\n',
        ssh_config=cfg,
        ssh_user="fallback",
    )
    alias = inv.resolve(Target("alias"))
    assert (alias.address, alias.user, alias.port) == ("10.9.9.9", "cfguser", 2200)
    assert alias.client_keys == (Path("/keys/alias_key"),)
    assert alias.config_host == "alias"  # asyncssh applies the rest of the block itself
    # ProxyJump a,b: connect to a, through it to b, through b to the target.
    assert alias.jump is not None
    assert alias.jump.name == "inner"
    assert alias.jump.address == "10.2.2.2"
    assert alias.jump.config_host == "10.2.2.2"
    assert alias.jump.jump == HostSpec("gate", "gate", 2022, "jumper", config_host="gate")
    web1 = inv.resolve(Target("web1"))  # inventory port beats ssh_config, User comes through
    assert (web1.user, web1.port) == ("webuser", 22)
    assert inv.resolve(Target("db")).user == "fallback"


def test_inventory_defaults_beat_ssh_config(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(SSH_CONFIG)
    inv = load(tmp_path, '[defaults]\nuser = "inv"\n', ssh_config=cfg)
    assert inv.resolve(Target("web1")).user == "inv"
    assert inv.resolve(Target("web1")).port == 2201


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[hosts.a\n", r"not valid TOML"),
        ("[hostz.a]\n", r"hostz: unknown table; did you mean 'hosts'\?"),
        ("hosts = 3\n", r"hosts: must be a table, not int"),
        ("[hosts]\na = 3\n", r"hosts\.a: must be a table, not int"),
        ('[hosts."bad name"]\n', r"hosts\.bad name: 'bad name' is not a valid host name"),
        ("[hosts.a]\nport = 70000\n", r"hosts\.a\.port: must be a whole number from 1 to 65535"),
        ("[hosts.a]\nport = true\n", r"hosts\.a\.port: must be a whole number"),
        ('[hosts.a]\nport = "22"\n', r"hosts\.a\.port: must be a whole number"),
        ("[hosts.a]\naddress = 1\n", r"hosts\.a\.address: must be a string, not int"),
        ('[hosts.a]\naddress = ""\n', r"hosts\.a\.address: '' is not an address"),
        ('[hosts.a]\nuser = "no way"\n', r"hosts\.a\.user: 'no way' is not a valid user name"),
        ('[hosts.a]\nclient_keys = "k"\n', r"hosts\.a\.client_keys: must be a list"),
        ('[hosts.a]\nadress = "x"\n', r"hosts\.a\.adress: unknown key; did you mean 'address'\?"),
        ('[defaults]\naddress = "x"\n', r"defaults\.address: unknown key \(only in \[hosts"),
        ('[hosts.a]\njump = "zz"\n', r"hosts\.a\.jump: 'zz' is not a host in \[hosts\]"),
        ('[defaults]\njump = "zz"\n', r"defaults\.jump: 'zz' is not a host in \[hosts\]"),
        ('[hosts.a]\njump = "a"\n', r"hosts\.a\.jump: a host cannot jump through itself"),
        ('[groups]\ng = "a"\n', r"groups\.g: must be a list of target expressions"),
        ('[groups]\ng = ["web[1-"]\n', r"groups\.g: .*never closed"),
        ('[groups]\ng = ["@nope"]\n', r"groups\.g: .*'@nope' is not a group"),
        ('[groups]\ng = ["@h"]\nh = ["@g"]\n', r"groups\.g: .*includes itself"),
        ('[groups]\n"g!" = ["a"]\n', r"groups\.g!: 'g!' is not a valid group name"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message) as info:
        load(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path / "inventory.toml"))


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such inventory file"):
        Inventory.load(tmp_path / "nope.toml", CollectorSettings())
    with pytest.raises(InventoryError, match=r"ssh_config .*: no such file"):
        Inventory.load(None, CollectorSettings(ssh_config=tmp_path / "nope"))


def test_settings_inventory_is_the_default_path(tmp_path: Path) -> None:
    path = tmp_path / "inv.toml"
    path.write_text(STACK_STYLE)
    inv = Inventory.load(None, CollectorSettings(inventory=path))
    assert "demo" in inv.groups


def test_host_spec_is_hashable_and_printable() -> None:
    spec = HostSpec("a", "10.0.0.1", 22, "u", jump=HostSpec("b", "10.0.0.2", 22, "u"))
    assert {spec: 1}[dataclasses.replace(spec)] == 1
    assert str(spec) == "u@a(10.0.0.1:22) via u@b(10.0.0.2:22)"


def test_hosts_preview_reads_the_cli_inventory_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetrun.cli.preview import preview
    from fleetrun.cli.settings import CliSettings

    # Nothing else names an inventory: no env var, no env file, no config file.
    for name in ("FLEETRUN_INVENTORY", "FLEETRUN_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    monkeypatch.setenv("FLEETRUN_ENV_FILE", str(empty_env))
    path = tmp_path / "inventory.toml"
    path.write_text(STACK_STYLE)
    text = preview(CliSettings(inventory=path), ["@demo"])
    assert text.splitlines() == [
        "demo[1-2] (2 hosts)",
        "  demo1  fleetrun@127.0.11.1:2222",
        "  demo2  fleetrun@127.0.11.2:2222",
    ]
