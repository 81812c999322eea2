"""The running stack's secrets (issue 14 item 8): its env file (the PostgreSQL password),
every private key it generated and Kafka's passwords are readable by their owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from stack.env import StackEnv
from stack.kafkasec import ADMIN, PRINCIPALS, SERVICE_PRINCIPALS, KafkaSecrets


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_env_file_and_private_keys_are_0600(stack_env: StackEnv) -> None:
    state = Path(stack_env["FLEETRUN_STACK_DIR"])
    secrets = [stack_env.path, stack_env.client_key]
    secrets += [state / "ssh" / h.name / "ssh_host_ed25519_key" for h in stack_env.ssh_hosts]
    assert {str(p): _mode(p) for p in secrets} == {str(p): 0o600 for p in secrets}
    assert "FLEETRUN_PG_DSN=" in stack_env.path.read_text()  # the file that holds the password


def test_kafka_passwords_keys_and_broker_config_are_0600(stack_env: StackEnv) -> None:
    kafka = KafkaSecrets(Path(stack_env["FLEETRUN_STACK_DIR"]) / "kafka")
    secrets = [kafka.password_file(p) for p in PRINCIPALS]
    # The broker's config holds the super user's password (its JAAS lines).
    secrets += [kafka.ca_key, kafka.broker_pem, kafka.users.parent / "server.properties"]
    assert {str(p): _mode(p) for p in secrets} == {str(p): 0o600 for p in secrets}
    assert _mode(kafka.ca_cert) == 0o644  # public: every client checks the broker with it
    # Each service is pointed at its own principal's file; none at the super user's.
    env = stack_env.values
    for service, principal in SERVICE_PRINCIPALS.items():
        assert env[f"FLEETRUN_{service}_KAFKA_SASL_USERNAME"] == principal
        assert env[f"FLEETRUN_{service}_KAFKA_SASL_PASSWORD_FILE"] == str(
            kafka.password_file(principal)
        )
    assert kafka.password(ADMIN) not in stack_env.path.read_text()
