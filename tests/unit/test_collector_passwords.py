"""Passwords from the collector's secrets (collector.passwords): the inventory's [passwords]
table, who gets which, and reading a file or a variable without ever showing the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.inventory import Inventory, InventoryError
from collector.passwords import PasswordError, Passwords, PasswordSource, parse_passwords
from collector.settings import CollectorSettings

GROUPS = {"switches": ["sw[1-3]"], "core": ["sw1", "rt1"], "edge": ["sw3"]}


def _parse(table: dict[str, object], tmp_path: Path) -> Passwords:
    return parse_passwords(table, tmp_path / "inventory.toml", GROUPS)


def test_a_host_entry_wins_over_its_group(tmp_path: Path) -> None:
    p = _parse(
        {"@switches": {"password_env": "SWITCHES"}, "sw2": {"password_file": "sw2.pw"}}, tmp_path
    )
    assert p.source_for("sw1") == PasswordSource(
        env="SWITCHES", origin="inventory passwords.@switches"
    )
    own = p.source_for("sw2")
    assert own is not None
    assert own.file == tmp_path / "sw2.pw"  # relative to the inventory file
    assert p.source_for("web1") is None  # not named: keys only


def test_two_groups_naming_different_passwords_for_one_host_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PasswordError, match="sw1 is in @switches and @core"):
        _parse({"@switches": {"password_env": "A"}, "@core": {"password_env": "B"}}, tmp_path)
    # ...unless the host has its own entry, or both name the same source.
    _parse(
        {
            "@switches": {"password_env": "A"},
            "@core": {"password_env": "B"},
            "sw1": {"password_env": "C"},
        },
        tmp_path,
    )
    _parse({"@switches": {"password_env": "A"}, "@edge": {"password_env": "A"}}, tmp_path)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"sw1": "hunter2"}, "must be a table"),
        ({"sw1": {"password": "hunter2"}}, "unknown key 'password'"),
        ({"sw1": {}}, "exactly one of password_env and password_file"),
        ({"sw1": {"password_env": "A", "password_file": "f"}}, "exactly one"),
        ({"sw1": {"password_env": "not a name"}}, "environment variable name"),
        ({"sw1": {"password_file": ""}}, "must be a file path"),
        ({"@nope": {"password_env": "A"}}, "'nope' is not a group"),
        ({"bad name": {"password_env": "A"}}, "neither a host name nor an @group"),
    ],
)
def test_mistakes_are_named(table: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(PasswordError, match=message):
        _parse(table, tmp_path)


def test_an_environment_variable_is_read_as_a_masked_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _parse({"sw1": {"password_env": "FLEETRUN_T_PW"}}, tmp_path)
    with pytest.raises(PasswordError, match=r"environment variable FLEETRUN_T_PW .* is not set"):
        p.get("sw1")
    monkeypatch.setenv("FLEETRUN_T_PW", "hunter2")
    secret = p.get("sw1")
    assert secret is not None
    assert secret.get_secret_value() == "hunter2"
    assert "hunter2" not in f"{secret} {secret!r}"
    assert p.get("web1") is None


def test_a_file_is_read_only_when_its_owner_alone_can(tmp_path: Path) -> None:
    path = tmp_path / "sw1.pw"
    path.write_text("hunter2\n")
    p = _parse({"sw1": {"password_file": str(path)}}, tmp_path)
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(PasswordError, match=rf"mode {mode:04o}.*chmod 600 {path}") as info:
            p.get("sw1")
        assert "hunter2" not in str(info.value)
    path.chmod(0o600)
    secret = p.get("sw1")
    assert secret is not None
    assert secret.get_secret_value() == "hunter2"  # the one line, without its newline
    path.write_text("rotated\n")  # a new password is picked up without a restart
    secret = p.get("sw1")
    assert secret is not None
    assert secret.get_secret_value() == "rotated"


@pytest.mark.parametrize("content", ["", "\n", "two\nlines\n"])
def test_a_file_holds_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "sw1.pw"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(PasswordError, match="one line"):
        _parse({"sw1": {"password_file": str(path)}}, tmp_path).get("sw1")


def test_a_missing_file_says_which(tmp_path: Path) -> None:
    p = _parse({"sw1": {"password_file": "gone.pw"}}, tmp_path)
    with pytest.raises(PasswordError, match=f"password file {tmp_path / 'gone.pw'}"):
        p.get("sw1")


def test_the_inventory_reads_its_passwords_table(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(
        '[groups]\nswitches = ["sw[1-2]"]\n\n[passwords]\n"@switches" = { password_env = "SW" }\n'
    )
    inv = Inventory.load(path, CollectorSettings())
    assert inv.passwords.source_for("sw2") is not None
    assert inv.passwords.source_for("web1") is None
    path.write_text('[passwords]\n"@nope" = { password_env = "SW" }\n')
    with pytest.raises(InventoryError, match="'nope' is not a group"):
        Inventory.load(path, CollectorSettings())
