"""The sink's exceptions, and the one place that sorts library errors into what to do next.

Every failure the sink meets is one of four kinds:
- retry: the database or Kafka is away or busy (connection lost, server restarting, timeout,
  deadlock); the same work succeeds later, so the batch is kept and retried with backoff.
- poison: this data can never be stored (the database rejects a value or a constraint); the
  batch is split to find the record, which goes to the dead-letter topic and table.
- fatal: the sink itself is misconfigured (bad password, missing database); retrying cannot help.
- unknown: anything else. Retried a few times (a library may surface a dying connection in
  unexpected ways), then treated as fatal so a real bug stops the process loudly.
"""

from __future__ import annotations

import enum
from typing import Final

import asyncpg
from aiokafka import errors as kafka_errors


class Action(enum.Enum):
    """What the sink does about an error."""

    RETRY = "retry"
    POISON = "poison"
    FATAL = "fatal"
    UNKNOWN = "unknown"


class SinkError(Exception):
    """Root of the sink's own errors; `retriable` says whether the same work may succeed later."""

    retriable: bool = False


class MigrationError(SinkError):
    """The schema cannot be brought to the version this sink needs."""


class FatalSinkError(SinkError):
    """The sink cannot run as configured (credentials, database, permissions)."""


# Server errors that say "this row cannot be stored"; asyncpg maps SQLSTATE classes to these.
_POISON: Final[tuple[type[BaseException], ...]] = (
    asyncpg.exceptions.DataError,  # class 22: bad value, out of range, invalid text
    asyncpg.exceptions.IntegrityConstraintViolationError,  # class 23 (unique handled below)
    asyncpg.exceptions.ProgramLimitExceededError,  # 54000: e.g. an index row too large
    asyncpg.exceptions.CardinalityViolationError,  # 21000: a row affected twice in one upsert
)
# Not poison: a value asyncpg cannot encode (TypeError, OverflowError). Rows are built from
# records that passed the contract, whose every bound fits its column, so that is a bug in the
# sink: it must stop loudly (unknown, below), not dead-letter a batch of good results.
# Server errors about the server's state, not the data: the same statement works later.
_RETRY: Final[tuple[type[BaseException], ...]] = (
    asyncpg.exceptions.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, restart, statement timeout
    asyncpg.exceptions.TransactionRollbackError,  # 40: deadlock, serialization
    asyncpg.exceptions.InsufficientResourcesError,  # 53: disk full, too many connections
    asyncpg.exceptions.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: reached a standby during failover
    # asyncpg's own protocol state broken by a connection dying mid-operation (seen when the
    # server shuts down during a COPY), or a statement cache outdated by a migration.
    asyncpg.InternalClientError,
    # A partition created by another sink at the same moment; the next attempt sees it.
    asyncpg.exceptions.UniqueViolationError,
    asyncpg.exceptions.DuplicateTableError,
)
_FATAL: Final[tuple[type[BaseException], ...]] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # 28: bad user or password
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D000: no such database
)


def classify(exc: BaseException) -> Action:
    """Decide what an exception from asyncpg, aiokafka or the OS means for the sink."""
    if isinstance(exc, SinkError):
        return Action.RETRY if exc.retriable else Action.FATAL
    if isinstance(exc, _FATAL):
        return Action.FATAL
    if isinstance(exc, _RETRY):
        return Action.RETRY
    if isinstance(exc, _POISON):
        return Action.POISON
    if isinstance(exc, kafka_errors.KafkaError):
        return Action.RETRY if exc.retriable else Action.FATAL
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        # Refused or reset connections, a deadline passed, or a connection asyncpg already
        # knows is closed (ConnectionDoesNotExistError is an InterfaceError).
        return Action.RETRY
    if isinstance(exc, asyncpg.PostgresError):
        # An error class not listed above (say, a privilege revoked by a DBA): retrying keeps
        # every record and recovers by itself once fixed; the logs and /healthz show it.
        return Action.RETRY
    return Action.UNKNOWN


def is_poison(exc: BaseException) -> bool:
    """True when the error is about the data being written, not about the database."""
    return classify(exc) is Action.POISON


def describe(exc: BaseException) -> str:
    """A one-line reason for logs and dead letters, with the server's detail when it has one."""
    # asyncpg's str() appends "DETAIL: …" on a new line; take the primary message instead.
    message = getattr(exc, "message", None)
    if not (isinstance(message, str) and message) and isinstance(exc, asyncpg.PostgresError):
        message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
    text = message if isinstance(message, str) and message else str(exc) or type(exc).__name__
    detail = getattr(exc, "detail", None)
    if isinstance(detail, str) and detail and detail not in text:
        text = f"{text} ({detail})"
    return " ".join(text.replace("\x00", "\\0").split())
