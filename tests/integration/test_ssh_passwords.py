"""Hosts that only take passwords (issue 14 item 9), on a real sshd that accepts one password for
a user created for the test: the password comes from the collector's secrets (a 0600 file or an
environment variable the inventory names, per host or group), never from a request, a log line
or --show-config; password authentication is off for every host the inventory does not name."""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.inventory import Inventory
from schemas import Result, Target, encode
from stack.env import StackEnv
from tests.support.sshd import ExtraSshd, extra_sshd, keygen, public_key
from tests.support.sshexec import MakeExecutor, request, stack_settings

ENV_NAME = "FLEETRUN_TEST_APPLIANCE_PASSWORD"


@dataclass(frozen=True, slots=True)
class Appliance:
    """An sshd that lets one user in with a password (and no key of ours)."""

    sshd: ExtraSshd
    user: str
    password: str
    known_hosts: Path
    stranger_key: Path  # a key no host authorizes: publickey fails, password must do it


@pytest.fixture
def appliance(stack_env: StackEnv, tmp_path: Path) -> Iterator[Appliance]:
    user = f"fltpw{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(18)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True, timeout=30)
    try:
        subprocess.run(
            ["chpasswd"], input=f"{user}:{password}\n", text=True, check=True, timeout=30
        )
        extra = [f"AllowUsers {user}", f"Match User {user}", "    PasswordAuthentication yes"]
        with extra_sshd(tmp_path / "sshd", stack_env, extra_config=extra) as sshd:
            known = tmp_path / "known_hosts"
            known.write_text(f"[{sshd.address}]:{sshd.port} {public_key(sshd.host_key)}\n")
            yield Appliance(sshd, user, password, known, keygen(tmp_path / "stranger"))
    finally:
        # -f: a session the sshd has not finished closing must not leave the user behind.
        subprocess.run(["userdel", "-r", "-f", user], check=False, timeout=30, capture_output=True)


def _inventory(app: Appliance, tmp_path: Path, passwords: str) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(
        f"""
[defaults]
client_keys = ["{app.stranger_key}"]
known_hosts = "{app.known_hosts}"

[hosts.sw1]
address = "{app.sshd.address}"
port = {app.sshd.port}
user = "{app.user}"

[hosts.sw2]
address = "{app.sshd.address}"
port = {app.sshd.port}
user = "{app.user}"

[groups]
switches = ["sw1"]

[passwords]
{passwords}
"""
    )
    return path


async def _run(
    stack_env: StackEnv, make_executor: MakeExecutor, inventory: Path, host: str, **opts: object
) -> Result:
    settings = stack_settings(stack_env, inventory=inventory)
    inv = Inventory.load(inventory, settings)
    e = make_executor(settings, inv)
    try:
        return await e.run(inv.resolve(Target(host)), request("id -un", **opts), collector="c")
    finally:
        await e.close()  # no session of the test user left when the fixture deletes it


def _secret_file(tmp_path: Path, password: str, mode: int = 0o600) -> Path:
    path = tmp_path / "sw1.password"
    path.write_text(password + "\n")
    path.chmod(mode)
    return path


async def test_a_password_from_a_0600_file_logs_in_and_is_never_logged(
    stack_env: StackEnv,
    tmp_path: Path,
    make_executor: MakeExecutor,
    appliance: Appliance,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = _secret_file(tmp_path, appliance.password)
    inventory = _inventory(appliance, tmp_path, f'sw1 = {{ password_file = "{secret}" }}')
    with caplog.at_level(logging.DEBUG):  # asyncssh's own debug lines included
        r = await _run(stack_env, make_executor, inventory, "sw1")
    assert r.status == "ok", r.error
    assert r.stdout_data == f"{appliance.user}\n".encode()
    logged = "\n".join(rec.getMessage() + repr(rec.__dict__) for rec in caplog.records)
    assert "password" in logged.lower()  # asyncssh did log the password method...
    assert appliance.password not in logged  # ...never the password
    assert appliance.password.encode() not in encode(r)


async def test_a_group_password_from_the_environment(
    stack_env: StackEnv,
    tmp_path: Path,
    make_executor: MakeExecutor,
    appliance: Appliance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_NAME, appliance.password)
    inventory = _inventory(appliance, tmp_path, f'"@switches" = {{ password_env = "{ENV_NAME}" }}')
    r = await _run(stack_env, make_executor, inventory, "sw1")
    assert r.status == "ok", r.error
    # sw2 is the same machine and user, but the inventory names no password for it: password
    # authentication stays off, so only the (unauthorized) key is offered.
    r2 = await _run(stack_env, make_executor, inventory, "sw2")
    assert r2.status == "auth_failed", r2.error


async def test_a_wrong_password_is_auth_failed(
    stack_env: StackEnv,
    tmp_path: Path,
    make_executor: MakeExecutor,
    appliance: Appliance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_NAME, "not-" + appliance.password)
    inventory = _inventory(appliance, tmp_path, f'sw1 = {{ password_env = "{ENV_NAME}" }}')
    r = await _run(stack_env, make_executor, inventory, "sw1")
    assert r.status == "auth_failed"
    # The password was offered (and refused), not merely a key: sshd says so.
    async with asyncio.timeout(10):
        while True:
            if f"Failed password for {appliance.user}" in appliance.sshd.log.read_text():
                break
            await asyncio.sleep(0.05)


async def test_a_readable_password_file_is_refused_with_the_fix(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor, appliance: Appliance
) -> None:
    secret = _secret_file(tmp_path, appliance.password, mode=0o640)
    inventory = _inventory(appliance, tmp_path, f'sw1 = {{ password_file = "{secret}" }}')
    r = await _run(stack_env, make_executor, inventory, "sw1", retries=2)
    assert (r.status, r.attempt) == ("error", 1)
    assert r.error is not None
    assert r.error.type == "PasswordError"
    assert f"password file {secret}" in r.error.message
    assert "mode 0640" in r.error.message
    assert f"chmod 600 {secret}" in r.error.message
    assert appliance.password not in r.error.message


async def test_show_config_never_shows_it(
    stack_env: StackEnv, tmp_path: Path, appliance: Appliance
) -> None:
    inventory = _inventory(appliance, tmp_path, f'sw1 = {{ password_env = "{ENV_NAME}" }}')
    env = {
        "PATH": "/usr/bin:/bin",
        ENV_NAME: appliance.password,
        "FLEETRUN_COLLECTOR_INVENTORY": str(inventory),
    }
    fleetrun = str(Path(sys.executable).with_name("fleetrun"))
    proc = await asyncio.create_subprocess_exec(
        fleetrun,
        "collector",
        "--show-config",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert str(inventory) in out.decode()  # the settings were printed, the inventory named
    assert appliance.password.encode() not in out + err
