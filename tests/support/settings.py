"""Service settings for tests: the stack's connection values, and settings as a child process's
environment.

Tests build settings objects directly (the class with keyword arguments: defaults and those
arguments only). A service started as a process gets FLEETRUN_ENV_FILE (the stack's env file:
Kafka, PostgreSQL, topic prefix) plus each setting the test chose, under the variable the
settings class itself names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from fleetrun.runtime.settings import ENV_FILE, ServiceSettings
from stack.env import StackEnv


def stack_ssh(env: StackEnv) -> dict[str, Any]:
    """The collector settings that reach the stack's sshd hosts: inventory, user, key,
    known_hosts."""
    return {
        "inventory": env.inventory,
        "ssh_user": env.ssh_user,
        "ssh_client_keys": (env.client_key,),
        "ssh_known_hosts": env.known_hosts,
    }


def env_text(value: object) -> str:
    """A setting's value as an environment variable writes it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple | list):
        return ",".join(env_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def process_env(
    cls: type[ServiceSettings], env: StackEnv, settings: Mapping[str, object]
) -> dict[str, str]:
    """The environment of a `cls` service process: this one's, the stack's env file named by
    FLEETRUN_ENV_FILE, and `settings` (field name → value) as the variables `cls` reads.

    The service connects to Kafka as the stack's super user (the env file names the service's
    own principal, whose ACLs cover the stack's topics, not the test's); a test that wants
    another principal passes its kafka_* settings."""
    unknown = set(settings) - set(cls.model_fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no setting(s) {sorted(unknown)}")
    return {
        **os.environ,
        ENV_FILE: str(env.path),
        **{cls.env_name(name): env_text(value) for name, value in env.kafka_admin.items()},
        **{cls.env_name(name): env_text(value) for name, value in settings.items()},
    }
