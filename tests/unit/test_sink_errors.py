"""One place decides what an error means: retry, poison (split the batch) or fatal."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import errors as kafka_errors

from fleetrun.runtime.backoff import backoff_delay
from sink.errors import (
    Action,
    FatalSinkError,
    MigrationError,
    classify,
    describe,
    is_poison,
)

E = asyncpg.exceptions


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        # the database is away or busy: keep the batch, retry with backoff
        (ConnectionRefusedError(111, "refused"), Action.RETRY),
        (ConnectionResetError(), Action.RETRY),
        (TimeoutError(), Action.RETRY),
        (E.CannotConnectNowError("the database system is starting up"), Action.RETRY),
        (E.AdminShutdownError("terminating connection"), Action.RETRY),
        (E.ConnectionDoesNotExistError("connection was closed"), Action.RETRY),
        (
            asyncpg.InterfaceError("cannot call Connection.execute(): connection is closed"),
            Action.RETRY,
        ),
        (E.QueryCanceledError("canceling statement due to statement timeout"), Action.RETRY),
        (
            asyncpg.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            ),
            Action.RETRY,
        ),
        (E.OutdatedSchemaCacheError("cached statement plan is invalid"), Action.RETRY),
        (E.DeadlockDetectedError("deadlock detected"), Action.RETRY),
        (E.TooManyConnectionsError("too many clients"), Action.RETRY),
        (E.LockNotAvailableError("lock timeout"), Action.RETRY),
        (E.UniqueViolationError("duplicate key"), Action.RETRY),  # a race, not the data
        (E.InsufficientPrivilegeError("permission denied"), Action.RETRY),  # fixable, keep it
        (kafka_errors.KafkaConnectionError(), Action.RETRY),
        (kafka_errors.RequestTimedOutError(), Action.RETRY),
        # this record can never be stored: isolate it, dead-letter it
        (E.CheckViolationError('no partition of relation "results" found for row'), Action.POISON),
        (E.CharacterNotInRepertoireError("invalid byte sequence"), Action.POISON),
        (E.NotNullViolationError("null value"), Action.POISON),
        (E.NumericValueOutOfRangeError("out of range"), Action.POISON),
        (E.InvalidTextRepresentationError("invalid input syntax for type json"), Action.POISON),
        (E.ProgramLimitExceededError("index row size exceeds maximum"), Action.POISON),
        # our own bug (a row the contract cannot produce): stop loudly, never dead-letter it
        (TypeError("expected str, got int"), Action.UNKNOWN),
        (OverflowError("value out of int32 range"), Action.UNKNOWN),
        (ValueError("a bug in building a row"), Action.UNKNOWN),
        # retrying cannot help
        (E.InvalidPasswordError("password authentication failed"), Action.FATAL),
        (E.InvalidCatalogNameError('database "x" does not exist'), Action.FATAL),
        (kafka_errors.TopicAuthorizationFailedError(), Action.FATAL),
        (MigrationError("edited"), Action.FATAL),
        (FatalSinkError("x"), Action.FATAL),
        (RuntimeError("a bug, or a transport closed under us"), Action.UNKNOWN),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classify(exc: BaseException, action: Action) -> None:
    assert classify(exc) is action
    assert is_poison(exc) == (action is Action.POISON)


def test_describe_is_one_line_with_the_servers_detail() -> None:
    exc = E.CheckViolationError("no partition of relation")
    exc.detail = "Partition key of the failing row contains (finished_at) = (2998-01-01)."
    assert describe(exc) == (
        "no partition of relation (Partition key of the failing row contains (finished_at) = "
        "(2998-01-01).)"
    )
    assert describe(ValueError("a\nb\x00c")) == "a b\\0c"
    assert describe(TimeoutError()) == "TimeoutError"


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.1, 0.2), (2, 0.2, 0.4), (4, 0.8, 1.6), (10, 5.0, 10.0), (500, 5.0, 10.0)],
)
def test_backoff_doubles_up_to_the_cap_with_jitter(attempt: int, low: float, high: float) -> None:
    assert backoff_delay(attempt, 0.2, 10.0, 0.0) == pytest.approx(low)
    assert backoff_delay(attempt, 0.2, 10.0, 1.0) == pytest.approx(high)
