"""The CLI's one error type and its exit codes (documented in the README)."""

from __future__ import annotations

EXIT_OK = 0  # every host ok
EXIT_HOSTS_FAILED = 1  # the request ran; at least one host is not ok
EXIT_USAGE = 2  # bad option, target expression or configuration value
EXIT_REJECTED = 3  # the collector refused the request (the reason is printed)
EXIT_WAIT_TIMEOUT = 4  # gave up waiting; the request keeps running
EXIT_UNAVAILABLE = 5  # Kafka or PostgreSQL cannot be reached
EXIT_NOT_FOUND = 6  # no such request (yet) in PostgreSQL
EXIT_INTERRUPTED = 130  # Ctrl-C; the request keeps running


class CliError(Exception):
    """An error to show as one line (what is wrong and what to do), then exit with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
