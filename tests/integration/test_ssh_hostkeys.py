"""Host-key refusals on real sshd, each named (issue 14 item 7): unknown key, changed key, no CA
signature, no host-key type in common. All are host_key_mismatch, none unreachable or retried."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from collector.inventory import HostSpec
from schemas import Result
from stack.env import StackEnv
from tests.support.sshd import ExtraSshd, extra_sshd, keygen, public_key, sign_host_key
from tests.support.sshexec import MakeExecutor, request, stack_settings

RETRIES = 2  # a retried refusal would show attempt > 1


async def _run(
    stack_env: StackEnv, make_executor: MakeExecutor, sshd: ExtraSshd, known: Path
) -> Result:
    e = make_executor(stack_settings(stack_env, ssh_known_hosts=known))
    host = HostSpec("keyhost", sshd.address, sshd.port, stack_env.ssh_user)
    return await e.run(host, request("true", retries=RETRIES), collector="c")


def _assert_refused(r: Result, reason: str) -> None:
    assert r.status == "host_key_mismatch", r.error
    assert r.attempt == 1  # never retried
    assert r.error is not None
    assert r.error.type == "HostKeyNotVerifiable"
    assert r.error.message.startswith(reason), r.error.message


def _entry(sshd: ExtraSshd, key: str) -> str:
    return f"[{sshd.address}]:{sshd.port} {key}\n"


async def test_unknown_key(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    with extra_sshd(tmp_path / "sshd", stack_env) as sshd:
        known = tmp_path / "known_hosts"
        known.write_text(f"[elsewhere.example]:22 {public_key(keygen(tmp_path / 'other'))}\n")
        r = await _run(stack_env, make_executor, sshd, known)
    _assert_refused(r, "unknown key: this host is not in known_hosts ")


async def test_changed_key(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    with extra_sshd(tmp_path / "sshd", stack_env) as sshd:
        known = tmp_path / "known_hosts"
        known.write_text(_entry(sshd, public_key(keygen(tmp_path / "previous"))))
        r = await _run(stack_env, make_executor, sshd, known)
    _assert_refused(r, "changed key: known_hosts ")


async def test_trusted_key_still_connects(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    """The control: the same sshd, its own key listed."""
    with extra_sshd(tmp_path / "sshd", stack_env) as sshd:
        known = tmp_path / "known_hosts"
        known.write_text(_entry(sshd, public_key(sshd.host_key)))
        r = await _run(stack_env, make_executor, sshd, known)
    assert r.status == "ok", r.error


async def test_no_ca_signature(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    """known_hosts holds only an @cert-authority line; the host has a plain key. The client
    offers only certificate types, the host closes the connection: it looked unreachable."""
    ca = keygen(tmp_path / "host_ca")
    with extra_sshd(tmp_path / "sshd", stack_env) as sshd:
        known = tmp_path / "known_hosts"
        known.write_text(f"@cert-authority * {public_key(ca)}\n")
        r = await _run(stack_env, make_executor, sshd, known)
    _assert_refused(r, "no CA signature: known_hosts ")
    assert "offers ssh-ed25519" in r.error.message if r.error else False


async def test_certificate_from_another_ca(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    ours = keygen(tmp_path / "our_ca")
    theirs = keygen(tmp_path / "their_ca")
    host_key = keygen(tmp_path / "ssh_host_ed25519_key")
    cert = sign_host_key(theirs, host_key, principals=["127.0.0.1"])
    with extra_sshd(
        tmp_path / "sshd", stack_env, host_key=host_key, extra_config=[f"HostCertificate {cert}"]
    ) as sshd:
        known = tmp_path / "known_hosts"
        known.write_text(f"@cert-authority * {public_key(ours)}\n")
        r = await _run(stack_env, make_executor, sshd, known)
    _assert_refused(r, "no trusted CA signature: ")


def _ecdsa(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f", str(path)],
        check=True,
        timeout=30,
        capture_output=True,
    )
    return path


@pytest.mark.parametrize("listed", ["ed25519", "ca+ed25519"])
async def test_no_host_key_type_in_common(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor, listed: str
) -> None:
    """The host has an ed25519 and an ECDSA key but now offers only ECDSA (HostKeyAlgorithms);
    known_hosts lists its ed25519 key (and maybe a CA)."""
    ecdsa = _ecdsa(tmp_path / "ssh_host_ecdsa_key")
    extra = [f"HostKey {ecdsa}", "HostKeyAlgorithms ecdsa-sha2-nistp256"]
    with extra_sshd(tmp_path / "sshd", stack_env, extra_config=extra) as sshd:
        known = tmp_path / "known_hosts"
        text = _entry(sshd, public_key(sshd.host_key))
        if listed.startswith("ca+"):
            text += f"@cert-authority * {public_key(keygen(tmp_path / 'ca'))}\n"
        known.write_text(text)
        r = await _run(stack_env, make_executor, sshd, known)
    _assert_refused(r, "no host-key type in common: known_hosts ")
    assert r.error is not None
    assert "accept ssh-ed25519" in r.error.message
    assert "offers ecdsa-sha2-nistp256" in r.error.message


async def test_a_closed_port_stays_unreachable_and_is_retried(
    stack_env: StackEnv, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    """The probe never turns a real network failure into a host-key one."""
    with extra_sshd(tmp_path / "sshd", stack_env) as sshd:
        known = tmp_path / "known_hosts"
        known.write_text(_entry(sshd, public_key(sshd.host_key)))
    r = await _run(stack_env, make_executor, sshd, known)  # sshd has stopped
    assert (r.status, r.attempt) == ("unreachable", RETRIES + 1)
