"""Hypothesis strategies for valid wire records, for tests here and in other packages.

Test-only: needs the `dev` extra (hypothesis). Every record drawn encodes without error, so
collector and sink tests can feed realistic, contract-valid data through their code.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import msgspec
from hypothesis import strategies as st

from schemas import limits
from schemas.environment import env_denied
from schemas.fields import DEAD_LETTER_STAGES, RESULT_STATUSES
from schemas.output import encode_output
from schemas.records import (
    Cancel,
    DeadLetter,
    ErrorInfo,
    Request,
    Result,
    Status,
    StatusCounts,
)
from schemas.shard import Shard

# Free text as the contract allows it: any code point but NUL and unpaired surrogates.
_TEXT_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Strings without NUL or unpaired surrogates."""
    return st.text(_TEXT_CHARS, min_size=min_size, max_size=max_size)


request_ids = st.uuids().map(str)
# Aware datetimes in a few fixed offsets, kept well inside datetime's range so conversion to UTC
# cannot overflow; records hold them as the contract's text (timestamps, below).
datetimes = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2998, 12, 31),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)


def _text(dt: datetime) -> str:
    """`dt` as contract text, in its own offset (the codec keeps the text as written)."""
    return dt.isoformat().replace("+00:00", "Z")


timestamps = datetimes.map(_text)
host_names = st.from_regex(
    r"[a-z0-9][a-z0-9-]{0,15}(\.[a-z0-9][a-z0-9-]{0,10}){0,2}", fullmatch=True
)
users = st.from_regex(r"[a-z_][a-z0-9_-]{0,15}", fullmatch=True)
instances = st.from_regex(r"[a-z]{1,10}-[0-9]{1,6}", fullmatch=True)
labels = st.dictionaries(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,20}", fullmatch=True),
    text(max_size=30),
    max_size=5,
)
env = st.dictionaries(
    # Names the contract refuses (schemas.environment) are not valid requests' names.
    st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True).filter(lambda n: not env_denied(n)),
    text(max_size=50),
    max_size=5,
)
_EXAMPLE_EXPRESSIONS = [
    "web[01-20].dc1",
    "db[1-3,7]-[a,b]",
    "10.0.0.[1-5]",
    "host:2222",
    "root@host",
    "@web",
    "!web05",
    "[2001:db8::1]:22",
    "web[1-9/2]&web[3-9]",
    "fe80::1",
]
target_expressions = st.lists(
    st.one_of(host_names, st.sampled_from(_EXAMPLE_EXPRESSIONS)), min_size=1, max_size=6
)
errors = st.builds(ErrorInfo, type=text(1, 30), message=text(0, 80))
sha256s = st.binary(max_size=16).map(lambda b: hashlib.sha256(b).hexdigest())


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A valid fleetrun.request/1 record."""
    submitted_at = draw(datetimes)
    expires_at = draw(
        st.none()
        | st.timedeltas(timedelta(microseconds=1), timedelta(days=2)).map(
            lambda d: _text(submitted_at + d)
        )
    )
    return Request(
        request_id=draw(request_ids),
        submitted_at=_text(submitted_at),
        expires_at=expires_at,
        principal=draw(text(1, 40)),
        command="echo " + draw(text(0, 200)),  # never blank
        targets=tuple(draw(target_expressions)),
        env=draw(env),
        timeout_s=draw(st.floats(limits.MIN_TIMEOUT_S, limits.MAX_TIMEOUT_S)),
        connect_timeout_s=draw(
            st.floats(limits.MIN_CONNECT_TIMEOUT_S, limits.MAX_CONNECT_TIMEOUT_S)
        ),
        concurrency=draw(st.integers(1, limits.MAX_CONCURRENCY)),
        max_errors=draw(
            st.none()
            | st.integers(0, limits.MAX_TARGETS)
            | st.integers(0, 100).map(lambda p: f"{p}%")
        ),
        max_output_bytes=draw(st.integers(0, limits.MAX_OUTPUT_BYTES)),
        retries=draw(st.integers(0, limits.MAX_RETRIES)),
        labels=draw(labels),
    )


@st.composite
def results(draw: st.DrawFn, output: st.SearchStrategy[bytes] | None = None) -> Result:
    """A valid fleetrun.result/1 record; `output` draws the captured bytes of each stream."""
    output = (
        output if output is not None else st.binary(max_size=300) | text(0, 300).map(str.encode)
    )
    status = draw(st.sampled_from(RESULT_STATUSES))
    exit_status = 0 if status == "ok" else draw(st.none() | st.integers(0, limits.MAX_EXIT_STATUS))
    exit_signal = (
        None
        if status == "ok"
        else draw(st.none() | st.sampled_from(["KILL", "TERM", "SEGV", "x@example.org"]))
    )
    started_at = draw(datetimes)
    streams: dict[str, object] = {}
    for name in ("stdout", "stderr"):
        captured = draw(output)
        missing = draw(st.sampled_from([0, 0, 1, 10_000]))  # bytes that were not kept
        streams[name], streams[f"{name}_encoding"] = encode_output(captured)
        streams[f"{name}_bytes"] = len(captured) + missing
        streams[f"{name}_truncated"] = missing > 0
        streams[f"{name}_sha256"] = draw(sha256s)
    return Result(
        request_id=draw(request_ids),
        host=draw(host_names | st.sampled_from(["10.0.0.1", "2001:db8::1"])),
        port=draw(st.integers(1, 65535)),
        user=draw(users),
        attempt=draw(st.integers(1, limits.MAX_ATTEMPT)),
        status=status,
        exit_status=exit_status,
        exit_signal=exit_signal,
        started_at=_text(started_at),
        finished_at=_text(started_at + draw(st.timedeltas(timedelta(0), timedelta(hours=1)))),
        duration_ms=draw(st.integers(0, 10**9)),
        error=draw(errors) if status == "error" else draw(st.none() | errors),
        collector=draw(instances),
        labels=draw(labels),
        **streams,  # type: ignore[arg-type]
    )


status_counts = st.builds(StatusCounts, **{name: st.integers(0, 1_000) for name in RESULT_STATUSES})


cancels = st.builds(
    Cancel,
    request_id=request_ids,
    principal=text(1, 40),
    reason=st.none() | text(1, 80),
    submitted_at=timestamps,
    drain=st.booleans(),
)


@st.composite
def shards(draw: st.DrawFn) -> Shard:
    """A valid fleetrun.shard/1 record (its request record is a valid request's text)."""
    count = draw(st.integers(1, 50))
    request = draw(requests())
    return Shard(
        request_id=request.request_id,
        index=draw(st.integers(0, count - 1)),
        count=count,
        targets_total=draw(st.integers(0, limits.MAX_TARGETS)),
        targets=tuple(draw(st.lists(host_names, min_size=1, max_size=6))),
        request=msgspec.json.encode(request).decode(),
        collector=draw(instances),
        created_at=draw(timestamps),
    )


@st.composite
def statuses(draw: st.DrawFn) -> Status:
    """A valid fleetrun.status/1 record in any of its three states (a rejected or completed
    one may say that a cancel stopped it)."""
    state = draw(st.sampled_from(["accepted", "rejected", "completed"]))
    collector = draw(instances)
    at = draw(timestamps)
    if state == "accepted":
        return Status.accepted(
            draw(requests()),
            targets_total=draw(st.integers(0, limits.MAX_TARGETS)),
            collector=collector,
            at=at,
        )
    if state == "rejected":
        request = draw(st.none() | requests())
        return Status.rejected(
            draw(request_ids),
            draw(text(1, 80)),
            collector=collector,
            request=request,
            cancel=draw(st.none() | cancels),
            at=at,
        )
    counts = draw(status_counts.filter(lambda c: c.total <= limits.MAX_TARGETS))
    return Status.completed(
        draw(request_ids),
        counts,
        duration_ms=draw(st.integers(0, 10**9)),
        collector=collector,
        cancel=draw(st.none() | cancels),
        at=at,
    )


dead_letters = st.builds(
    DeadLetter,
    source_topic=st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True),
    partition=st.integers(0, limits.MAX_PARTITION),
    offset=st.integers(0, limits.MAX_SAFE_INTEGER),
    key=st.none() | st.binary(max_size=60),
    value=st.none() | st.binary(max_size=300),
    error=errors,
    stage=st.sampled_from(DEAD_LETTER_STAGES),
    at=timestamps,
    instance=instances,
    request_id=st.none() | request_ids,
    source_timestamp=st.none() | timestamps,
)
messages = st.one_of(requests(), results(), statuses(), dead_letters, cancels, shards())
