"""The stack's configuration and process helpers, without starting anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stack.config import StackConfig
from stack.proc import StackError, fail, pid_alive, read_pid, wait_until

TEMPLATES = Path(__file__).resolve().parents[2] / "stack" / "templates"


def test_environment_overrides_every_port_and_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEETRUN_STACK_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("FLEETRUN_STACK_KAFKA_PORT", "39092")
    monkeypatch.setenv("FLEETRUN_STACK_PG_PORT", "45432")
    monkeypatch.setenv("FLEETRUN_STACK_SSH_BASE_ADDRESS", "127.0.30.250")
    cfg = StackConfig.from_env()
    assert cfg.state_dir == tmp_path / "s"
    assert cfg.env_file == tmp_path / "s" / "fleetrun.env"
    assert cfg.kafka_bootstrap == "127.0.0.1:39092"
    assert cfg.pg_dsn.endswith("@127.0.0.1:45432/fleetrun")
    assert [cfg.ssh_address(i) for i in range(3)] == [
        "127.0.30.250",
        "127.0.30.251",
        "127.0.30.252",
    ]


def test_a_bad_port_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETRUN_STACK_PG_PORT", "fivefive")
    with pytest.raises(SystemExit, match="FLEETRUN_STACK_PG_PORT='fivefive' is not a whole number"):
        StackConfig.from_env()


@pytest.mark.parametrize("name", ["server.properties", "log4j2.properties", "sshd_config"])
def test_templates_render_without_leftover_placeholders(name: str) -> None:
    values = dict.fromkeys(
        [
            "port",
            "controller_port",
            "data_dir",
            "log_file",
            "name",
            "address",
            "host_key",
            "pid_file",
            "authorized_keys",
            "user",
            "admin_password",
            "broker_pem",
            "ca_cert",
        ],
        "X",
    )
    rendered = (TEMPLATES / name).read_text().format(**values)
    assert "{" not in rendered


def test_kafka_listens_on_loopback_only_and_never_creates_topics_itself() -> None:
    props = (TEMPLATES / "server.properties").read_text()
    listeners = next(line for line in props.splitlines() if line.startswith("listeners="))
    assert all("//127.0.0.1:" in part for part in listeners.split("=", 1)[1].split(","))
    assert "auto.create.topics.enable=false" in props


def test_kafka_authenticates_every_listener_and_denies_what_no_acl_allows() -> None:
    props = dict(
        line.split("=", 1)
        for line in (TEMPLATES / "server.properties").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    assert protocols == {"CLIENT": "SASL_SSL", "CONTROLLER": "SASL_PLAINTEXT"}
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"


def test_sshd_allows_keys_only() -> None:
    config = (TEMPLATES / "sshd_config").read_text()
    assert "PasswordAuthentication no" in config
    assert "KbdInteractiveAuthentication no" in config
    assert "PermitRootLogin no" in config


def test_pid_checks_refuse_a_reused_pid(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert read_pid(pid_file) == os.getpid()
    assert pid_alive(os.getpid(), "python")
    # Same pid, but not the process we would have started: never treated as ours.
    assert not pid_alive(os.getpid(), "kafka.Kafka /no/such/server.properties")
    pid_file.write_text("garbage")
    assert read_pid(pid_file) is None


def test_exited_child_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    assert not pid_alive(child.pid, sys.executable)


def test_wait_until_gives_up_at_its_deadline_and_on_death() -> None:
    with pytest.raises(StackError, match="not ready after 0 s"):
        wait_until(lambda: False, timeout_s=0.2, what="thing", interval_s=0.05)
    with pytest.raises(StackError, match="process exited while starting"):
        wait_until(lambda: False, timeout_s=30, what="thing", alive=lambda: False)


def test_failure_message_names_the_log_and_its_tail(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)))
    message = str(fail("svc", "could not bind", log))
    assert message.startswith("svc: could not bind")
    assert f"log: {log}" in message
    assert "line 99" in message
    assert "line 10\n" not in message


def test_up_without_apps_forgets_app_pid_files_left_by_a_reboot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from stack import Stack

    monkeypatch.setenv("FLEETRUN_STACK_DIR", str(tmp_path))
    stack = Stack()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    collector, sink, _web = stack.apps
    collector.home.mkdir(parents=True)
    collector.pid_file.write_text(f"{gone.pid}\n")  # its process is gone
    # A live process whose command line carries the sink's marker (`-m fleetrun sink`) keeps
    # its pid file: it still runs.
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", *sink.marker.split()],
        stdin=subprocess.PIPE,
    ) as alive:
        sink.pid_file.write_text(f"{alive.pid}\n")
        # Popen returns once exec has begun; the new command line shows a moment later.
        wait_until(lambda: pid_alive(alive.pid, sink.marker), timeout_s=30, what="the child")
        stack.forget_stopped_apps()
        assert not collector.pid_file.exists()
        assert sink.pid_file.exists()
        assert [name for name, *_ in stack.status() if name in ("collector", "sink")] == ["sink"]
        alive.communicate(timeout=30)
