"""How hosts are reached and trusted: jump hosts, SSH CA host certificates, ssh_config aliases."""

from __future__ import annotations

from pathlib import Path

from collector.inventory import HostSpec, Inventory
from collector.settings import CollectorSettings
from schemas import Target
from stack.env import StackEnv
from tests.support.net import free_port
from tests.support.sshd import extra_sshd, keygen, public_key, sign_host_key
from tests.support.sshexec import (
    MakeExecutor,
    host_key_line,
    known_hosts_with,
    request,
    stack_settings,
)
from tests.support.tcpproxy import TcpProxy


def inventory(settings: CollectorSettings, path: Path, text: str) -> Inventory:
    path.write_text(text)
    return Inventory.load(path, settings)


def stack_hosts_toml(env: StackEnv) -> str:
    return "".join(
        f'[hosts.{h.name}]\naddress = "{h.address}"\nport = {h.port}\n' for h in env.ssh_hosts
    )


async def test_jump_through_demo1_to_demo2(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    settings = stack_settings(stack_env)
    text = stack_hosts_toml(stack_env).replace("[hosts.demo2]\n", '[hosts.demo2]\njump = "demo1"\n')
    inv = inventory(settings, tmp_path / "inv.toml", text)
    demo2 = inv.resolve(Target("demo2"))
    assert demo2.jump is not None
    assert demo2.jump.name == "demo1"
    e = make_executor(settings, inv)
    r = await e.run(demo2, request("echo $SSH_CONNECTION"), collector="c")
    again = await e.run(demo2, request("true"), collector="c")
    stats = e.pool_stats()
    assert (r.status, again.status) == ("ok", "ok"), r.error
    # SSH_CONNECTION = client_ip client_port server_ip server_port: demo2's own sshd served it.
    assert r.stdout_data.split()[2] == stack_env.ssh_hosts[1].address.encode()
    assert (stats["open"], stats["new_total"], stats["reused_total"]) == (2, 2, 1)


async def test_jump_host_is_the_only_way_in_and_is_replaced_when_dead(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    demo1, demo2 = stack_env.ssh_hosts[:2]
    async with TcpProxy(demo1.address, demo1.port) as gate:
        known = known_hosts_with(
            stack_env,
            tmp_path / "known_hosts",
            f"[{gate.host}]:{gate.port} {host_key_line(stack_env, 'demo1')}",
        )
        settings = stack_settings(stack_env, ssh_known_hosts=known)
        inv = inventory(
            settings,
            tmp_path / "inv.toml",
            f'[hosts.gate]\naddress = "{gate.host}"\nport = {gate.port}\n'
            f'[hosts.demo2]\naddress = "{demo2.address}"\nport = {demo2.port}\njump = "gate"\n',
        )
        e = make_executor(settings, inv)
        host = inv.resolve(Target("demo2"))
        first = await e.run(host, request("hostname"), collector="c")
        assert gate.accepted == 1  # one TCP connection from us: to the jump host
        gate.cut()  # the jump connection dies, and the tunnel inside it with it
        second = await e.run(host, request("true"), collector="c")
        stats = e.pool_stats()
    assert (first.status, second.status) == ("ok", "ok"), (first.error, second.error)
    assert gate.accepted == 2
    assert stats["open"] == 2


async def test_ssh_ca_host_certificate(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    ca = keygen(tmp_path / "host_ca", "fleetrun-test-ca")
    other_ca = keygen(tmp_path / "other_ca", "someone-else")
    host_key = keygen(tmp_path / "ssh_host_ed25519_key", "cert-host")
    address = "127.0.0.1"
    cert = sign_host_key(ca, host_key, principals=["certhost", address])
    with extra_sshd(
        tmp_path / "sshd",
        stack_env,
        address=address,
        host_key=host_key,
        extra_config=[f"HostCertificate {cert}"],
    ) as sshd:
        host = HostSpec("certhost", sshd.address, sshd.port, stack_env.ssh_user)
        outcomes = {}
        for label, ca_key in (("trusted", ca), ("other", other_ca)):
            known = tmp_path / f"known_hosts.{label}"
            # Only the CA is listed: the host key itself appears nowhere.
            known.write_text(f"@cert-authority * {public_key(ca_key)}\n")
            e = make_executor(stack_settings(stack_env, ssh_known_hosts=known))
            outcomes[label] = await e.run(host, request("echo certified"), collector="c")
    assert outcomes["trusted"].status == "ok", outcomes["trusted"].error
    assert outcomes["trusted"].stdout_data == b"certified\n"
    assert outcomes["other"].status == "host_key_mismatch"


async def test_host_certificate_for_another_name_is_refused(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    ca = keygen(tmp_path / "host_ca")
    host_key = keygen(tmp_path / "ssh_host_ed25519_key")
    cert = sign_host_key(ca, host_key, principals=["somewhere-else.example"])
    with extra_sshd(
        tmp_path / "sshd", stack_env, host_key=host_key, extra_config=[f"HostCertificate {cert}"]
    ) as sshd:
        known = tmp_path / "known_hosts"
        known.write_text(f"@cert-authority * {public_key(ca)}\n")
        e = make_executor(stack_settings(stack_env, ssh_known_hosts=known))
        host = HostSpec("certhost", sshd.address, sshd.port, stack_env.ssh_user)
        r = await e.run(host, request("true"), collector="c")
    assert r.status == "host_key_mismatch"


async def test_ssh_config_alias(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    demo3 = stack_env.ssh_hosts[2]
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host box3\n    HostName {demo3.address}\n    Port {demo3.port}\n"
        f"    User {stack_env.ssh_user}\n    IdentityFile {stack_env.client_key}\n"
    )
    settings = stack_settings(
        stack_env, ssh_config=config, ssh_user="not-this-one", ssh_client_keys=()
    )
    inv = inventory(settings, tmp_path / "inv.toml", "")
    host = inv.resolve(Target("box3"))
    assert (host.address, host.port, host.user) == (demo3.address, demo3.port, stack_env.ssh_user)
    e = make_executor(settings, inv)
    r = await e.run(host, request("echo $SSH_CONNECTION"), collector="c")
    assert r.status == "ok", r.error
    assert (r.host, r.port, r.user) == ("box3", demo3.port, stack_env.ssh_user)
    assert r.stdout_data.split()[2] == demo3.address.encode()


async def test_jump_failures_say_which_hop_failed(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    demo1 = stack_env.ssh_hosts[0]
    settings = stack_settings(stack_env)
    inv = inventory(
        settings,
        tmp_path / "inv.toml",
        f'[hosts.demo1]\naddress = "{demo1.address}"\nport = {demo1.port}\n'
        f'[hosts.gone]\naddress = "127.0.0.1"\nport = {free_port()}\n'
        f'[hosts.behind-demo1]\naddress = "127.0.0.1"\nport = {free_port()}\njump = "demo1"\n'
        '[hosts.behind-gone]\naddress = "127.0.0.1"\nport = 22\njump = "gone"\n',
    )
    e = make_executor(settings, inv)
    req = request("true")
    target_down = await e.run(inv.resolve(Target("behind-demo1")), req, collector="c")
    jump_down = await e.run(inv.resolve(Target("behind-gone")), req, collector="c")
    assert target_down.status == "unreachable"
    assert target_down.error is not None
    assert target_down.error.message.startswith("behind-demo1 via jump host demo1: ")
    assert jump_down.status == "unreachable"
    assert jump_down.error is not None
    assert jump_down.error.type == "JumpError"
    assert jump_down.error.message.startswith("via jump host gone: ConnectionRefusedError")
