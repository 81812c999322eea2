"""Signed requests and the command policy on the real stack: a collector with a policy and an
allowed-signers file, requests signed by `ssh-keygen -Y sign`, the stack's real sshd hosts.

A signed, allowed request runs; unsigned, tampered, wrong-key, stale, policy-denied and
template-injection requests run nowhere (counted on the hosts themselves) and are rejected with
the reason, audited, and dead-lettered.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

import schemas
from fleetrun.cli.signing import sign_request
from schemas import Request, format_timestamp, known
from stack.env import StackEnv
from tests.support.collector import (
    collector_settings,
    counted,
    finished,
    read_until,
    running_collector,
    runs,
    ssh_all,
    submit,
)
from tests.support.kafka import Topics

DEMO = ("demo1", "demo2", "demo3")


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


def _fingerprint(pub: Path) -> str:
    """The key's fingerprint as ssh-keygen -l prints it."""
    done = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(pub)], check=True, capture_output=True, text=True, timeout=30
    )
    return done.stdout.split()[1]


def _policy(path: Path, allowed_command: str) -> Path:
    path.write_text(
        f"""
[templates.restart_service]
command = "echo restarting {{name}}"
params.name = {{ one_of = ["nginx", "haproxy"] }}

[[rules]]
name = "tests-demo"
principals = ["tests"]
targets = ["@demo"]
commands = [{json.dumps(allowed_command)}]
templates = ["restart_service"]
"""
    )
    return path


def _request(command: str | None = None, **fields: object) -> Request:
    if command is not None:
        fields["command"] = command
    return Request.new(principal="tests", targets=["@demo"], **fields)  # type: ignore[arg-type]


async def test_only_signed_allowed_requests_run(
    topics: Topics, stack_env: StackEnv, remote_tag: str, tmp_path: Path
) -> None:
    key = _keygen(tmp_path / "alice")
    other = _keygen(tmp_path / "mallory")
    signers = tmp_path / "allowed_signers"
    pub = (tmp_path / "alice.pub").read_text().split()
    signers.write_text(f'tests namespaces="fleetrun" {pub[0]} {pub[1]}\n')
    allowed = counted("signed", remote_tag, "echo ok")
    settings = collector_settings(
        topics.prefix,
        allowed_signers=signers,
        policy=_policy(tmp_path / "policy.toml", allowed),
    )
    marker = f"/tmp/fleetrun-inject-{remote_tag}-x"
    good = sign_request(_request(allowed), key)
    template_ok = sign_request(_request(template="restart_service", params={"name": "nginx"}), key)
    refused = {
        "unsigned": (_request(counted("unsigned", remote_tag, "true")), "unsigned request"),
        "tampered": (
            msgspec.structs.replace(
                sign_request(_request(allowed), key),
                command=counted("tampered", remote_tag, "true"),
            ),
            "does not match the request",
        ),
        "wrong-key": (
            sign_request(_request(counted("wrongkey", remote_tag, "true")), other),
            "is not in the allowed signers file",
        ),
        "stale": (
            sign_request(
                _request(
                    allowed,
                    submitted_at=format_timestamp(datetime.now(UTC) - timedelta(minutes=10)),
                ),
                key,
            ),
            "stale request",
        ),
        "denied": (
            sign_request(_request(counted("denied", remote_tag, "true")), key),
            "denied by policy rule 'tests-demo': command",
        ),
        "injection": (
            sign_request(
                _request(template="restart_service", params={"name": f"nginx; touch {marker}"}),
                key,
            ),
            "is not one of nginx|haproxy",
        ),
    }
    requests = [good, template_ok, *(r for r, _ in refused.values())]
    async with running_collector(settings):
        await submit(topics.bootstrap, topics["requests"], requests)
        seen = await read_until(
            topics.bootstrap,
            topics.prefix,
            finished(*(r.request_id for r in requests)),
            timeout_s=60,
        )

    # The signed, allowed request ran once on every host, and says who signed it.
    results, statuses = seen.for_request(good.request_id)
    assert sorted((r.host, r.status) for r in results) == [(h, "ok") for h in DEMO]
    accepted = statuses[0]
    assert (accepted.state, known(accepted.verified), known(accepted.policy_rule)) == (
        "accepted",
        True,
        "tests-demo",
    )
    assert known(accepted.key_fingerprint) == _fingerprint(tmp_path / "alice.pub")
    assert set((await runs(stack_env, "signed", remote_tag)).values()) == {1}

    # The template ran rendered, its parameter quoted.
    results, statuses = seen.for_request(template_ok.request_id)
    assert {r.stdout_data for r in results} == {b"restarting nginx\n"}
    assert statuses[0].command == "echo restarting nginx"
    assert known(statuses[0].template) == "restart_service"

    # Each refusal: rejected with its reason, dead-lettered, and nothing ran anywhere.
    dead = {d.request_id for d in seen.dead_letters}
    for name, (request, reason) in refused.items():
        results, statuses = seen.for_request(request.request_id)
        assert results == [], name
        assert [s.state for s in statuses] == ["rejected"], name
        assert reason in (known(statuses[0].reason) or ""), (name, statuses[0].reason)
        assert request.request_id in dead, name
    for name in ("unsigned", "tampered", "wrongkey", "denied"):
        assert set((await runs(stack_env, name, remote_tag)).values()) == {0}, name
    exists = await ssh_all(stack_env, f"test -e {marker} && echo yes || echo no")
    assert set(exists.values()) == {"no\n"}


def test_the_cli_signature_verifies_with_ssh_keygen(tmp_path: Path) -> None:
    key = _keygen(tmp_path / "k")
    signed = sign_request(_request("uptime"), key)
    pub = (tmp_path / "k.pub").read_text().split()
    (tmp_path / "allowed").write_text(f"tests {pub[0]} {pub[1]}\n")
    (tmp_path / "sig").write_text(signed.signature)  # type: ignore[arg-type]
    message = schemas.canonical_bytes(schemas.as_document(signed))
    done = subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "tests",
         "-n", "fleetrun", "-s", str(tmp_path / "sig")],
        input=message,
        capture_output=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b'Good "fleetrun" signature for tests' in done.stdout
