"""The CLI's one error type and its exit codes (documented in the README)."""

from __future__ import annotations

import os
from pathlib import Path

from fleetrun.runtime.kafkaauth import REFUSALS, KafkaClientSettings, who

EXIT_OK = 0  # every host ok
EXIT_HOSTS_FAILED = 1  # the request ran; at least one host is not ok
EXIT_USAGE = 2  # bad option, target expression or configuration value
EXIT_REJECTED = 3  # the collector refused the request (the reason is printed)
EXIT_WAIT_TIMEOUT = 4  # gave up waiting; the request keeps running
EXIT_UNAVAILABLE = 5  # Kafka or PostgreSQL cannot be reached
EXIT_NOT_FOUND = 6  # no such request (yet) in PostgreSQL; `cancel`: no trace of it on Kafka
EXIT_ALREADY_FINISHED = 7  # `cancel`: the request had finished; nothing was cancelled
EXIT_INTERRUPTED = 130  # Ctrl-C; the request keeps running


class CliError(Exception):
    """An error to show as one line (what is wrong and what to do), then exit with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def local_stack_env_file() -> Path:
    """Where `python -m stack` writes its env file (stack/config.py; a unit test keeps the two
    in step: the CLI is installed without the stack, so it only knows the place)."""
    state = os.environ.get("FLEETRUN_STACK_DIR")
    if state:
        return Path(state).resolve() / "fleetrun.env"
    if os.geteuid() == 0:
        return Path("/var/lib/fleetrun-stack/fleetrun.env")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "fleetrun-stack" / "fleetrun.env"


def local_stack_hint() -> str:
    """Where the local development stack's settings are, when it ran here and no settings file
    was named: said out loud in "cannot reach" errors, never read behind the user's back."""
    env_file = local_stack_env_file()
    if os.environ.get("FLEETRUN_ENV_FILE") or not env_file.is_file():
        return ""
    return f"; for the local stack: export FLEETRUN_ENV_FILE={env_file}"


def kafka_unavailable(settings: KafkaClientSettings, exc: BaseException) -> CliError:
    """The one-line error for Kafka failing this client: not answering, or refusing it."""
    if isinstance(exc, REFUSALS):
        return CliError(
            f"Kafka at {settings.kafka_bootstrap} does not allow {who(settings)} this: "
            f"{type(exc).__name__}: {exc}; ask its operators for the ACL, or check "
            f"{settings.env_name('kafka_sasl_username')}",
            EXIT_USAGE,
        )
    bootstrap = settings.kafka_bootstrap
    return CliError(
        f"cannot reach Kafka at {bootstrap} ({exc or type(exc).__name__}); "
        "is it running? (`make stack-up`, or set FLEETRUN_KAFKA_BOOTSTRAP)" + local_stack_hint(),
        EXIT_UNAVAILABLE,
    )
