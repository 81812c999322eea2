"""The collector's one exception root, and the one place that classifies Kafka's errors."""

from __future__ import annotations

from typing import Final

from aiokafka import errors as kafka_errors


class CollectorError(Exception):
    """Something the collector could not do; `retriable` says whether trying again can help."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class RecordTooLarge(CollectorError):
    """The broker refused a record as too large (it must be made smaller, not retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


# aiokafka flags most transient errors with `retriable = True`; these are transient too but not
# flagged: a client-side wait that ran out, a broker that is restarting, a group mid-rebalance.
_ALSO_RETRIABLE: Final[tuple[type[BaseException], ...]] = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaUnavailableError,
    kafka_errors.BrokerNotAvailableError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.ProducerClosed,
    TimeoutError,
    ConnectionError,
)
_TOO_LARGE: Final[tuple[type[BaseException], ...]] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
)


def is_retriable(exc: BaseException) -> bool:
    """Whether retrying the same Kafka operation later may succeed."""
    if isinstance(exc, CollectorError):
        return exc.retriable
    if isinstance(exc, _ALSO_RETRIABLE):
        return True
    return bool(getattr(exc, "retriable", False))


def classify(exc: BaseException, doing: str) -> CollectorError:
    """Wrap a Kafka (or deadline) exception as a CollectorError; `doing` says what failed."""
    if isinstance(exc, CollectorError):
        return exc
    message = f"{doing}: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
    if isinstance(exc, _TOO_LARGE):
        return RecordTooLarge(message)
    return CollectorError(message, retriable=is_retriable(exc))
