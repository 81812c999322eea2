"""Structured logs: one line per event, `key=value` (or JSON) fields such as request_id and host.

log = logging.getLogger("fleetrun.collector")
log.info("result published", extra={"request_id": rid, "host": host, "status": "ok"})
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from fleetrun.runtime import outage

# Attributes every LogRecord has; anything else came in through `extra=` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (its `extra=`)."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _kv(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """`2026-11-25T19:38:00.123Z INFO collector result published request_id=… host=…`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"{stamp}.{int(record.msecs):03d}Z",
            record.levelname,
            record.name.removeprefix("fleetrun."),
            record.getMessage(),
        ]
        parts += [f"{k}={_kv(v)}" for k, v in fields_of(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


# Errors that mean "the server could not be reached", by class name: runtime does not import the
# client libraries, and their classes are stable public names (aiokafka.errors, asyncpg).
_UNREACHABLE_ERRORS = frozenset(
    {
        "KafkaConnectionError",
        "NodeNotReadyError",
        "RequestTimedOutError",
        "KafkaTimeoutError",
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "PostgresConnectionError",
    }
)
# aiokafka's metadata refresh gives up without an exception to show.
_UNREACHABLE_MESSAGES = frozenset({"Unable to update metadata from %s"})


def says_unreachable(record: logging.LogRecord) -> bool:
    """True when a library record reports that it could not reach its server."""
    if record.msg in _UNREACHABLE_MESSAGES:
        return True
    args = record.args if isinstance(record.args, tuple) else ()
    errors = [a for a in args if isinstance(a, BaseException)]
    if record.exc_info and record.exc_info[1] is not None:
        errors.append(record.exc_info[1])
    return any(
        isinstance(e, OSError | TimeoutError)
        or any(c.__name__ in _UNREACHABLE_ERRORS for c in type(e).__mro__)
        for e in errors
    )


LIBRARY_NOISE = (
    outage.LibraryNoise("kafka", ("aiokafka", "kafka"), says_unreachable),
    outage.LibraryNoise("database", ("asyncpg",), says_unreachable),
)


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for a service process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    # A dependency that is down is one line when it goes and one when it is back
    # (runtime/outage.py), not one per failed connection attempt of its client library.
    handler.addFilter(outage.NoiseFilter(outage.tracker(), LIBRARY_NOISE))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at INFO (aiokafka's group joins, asyncssh's per-channel lines) would drown
    # the per-host events an operator needs; their warnings still come through.
    for noisy in ("aiokafka", "asyncssh", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
