"""The sink's PostgreSQL side against a real server: writes, merges, splitting, views."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from schemas import (
    Cancel,
    Request,
    Result,
    Status,
    decode_output,
    format_timestamp,
    parse_timestamp,
)
from sink.app import run_migrations
from sink.partitions import Partitions
from sink.rows import request_row, result_row
from sink.settings import SinkSettings
from sink.store import RequestItem, ResultItem, Store, WriteBatch
from tests.support.fakes import FakeRecord
from tests.support.records import make_counts, make_request
from tests.support.sink import fetch, make_result


def settings_for(dsn: str) -> SinkSettings:
    return SinkSettings(pg_dsn=SecretStr(dsn), topic_prefix="t.", id="sink-test-1")


@pytest.fixture
async def store(pg_dsn: str) -> AsyncIterator[Store]:
    settings = settings_for(pg_dsn)
    await run_migrations(settings)
    s = Store(settings, Partitions(settings))
    await s.open()
    yield s
    await s.close(10)


def result_items(results: list[Result], first_offset: int = 0) -> list[ResultItem]:
    return [
        (result_row(r, 0, first_offset + i), _record("t.results", first_offset + i))
        for i, r in enumerate(results)
    ]


def status_items(statuses: Sequence[Status], first_offset: int = 0) -> list[RequestItem]:
    """One requests row per status record, as the sink buffers them."""
    return [(request_row(s), _record("t.status", first_offset + i)) for i, s in enumerate(statuses)]


def _record(topic: str, offset: int) -> FakeRecord:
    return FakeRecord(b"{}", key=b"k", topic=topic, offset=offset, timestamp=1_700_000_000_000)


async def test_a_batch_is_stored_once_however_often_it_is_written(store: Store) -> None:
    rid = str(uuid.uuid4())
    batch = WriteBatch(results=result_items([make_result(rid, f"h{i}") for i in range(50)]))
    first = await store.write(batch)
    again = await store.write(batch)
    assert (first.results_inserted, first.results_duplicate) == (50, 0)
    assert (again.results_inserted, again.results_duplicate) == (0, 50)
    rows = await fetch(store.settings.pg_dsn.get_secret_value(), "SELECT count(*) FROM results")
    assert rows[0][0] == 50


async def test_results_are_copied_straight_in_unless_redelivered_ones_are_about(
    store: Store,
) -> None:
    def batch(first: int, count: int = 20) -> list[ResultItem]:
        rid = str(uuid.uuid4())
        return result_items([make_result(rid, f"h{i}") for i in range(count)], first)

    a, b, c, d, e = (batch(100 * n) for n in range(5))
    steps = [
        a,  # a starting sink may replay its predecessor's last batch: staged
        b,  # none were: straight in
        a + c,  # a again: the COPY fails on the key, the flush is redone staged
        d,  # staged until a batch has no duplicates
        e,  # straight in again
    ]
    outcomes = [await store.write(WriteBatch(results=items)) for items in steps]

    seen = [(o.path, o.results_inserted, o.results_duplicate) for o in outcomes]
    assert seen == [
        ("staged", 20, 0),
        ("direct", 20, 0),
        ("staged", 20, 20),
        ("staged", 20, 0),
        ("direct", 20, 0),
    ]
    dsn = store.settings.pg_dsn.get_secret_value()
    assert (await fetch(dsn, "SELECT count(*) FROM results"))[0][0] == 100
    # Every request has its row for request_summary, whichever way its results came.
    ids = await fetch(dsn, "SELECT count(*) FROM requests")
    assert ids[0][0] == 5


async def test_records_the_database_refuses_are_isolated_and_dead_lettered(store: Store) -> None:
    rid = str(uuid.uuid4())
    results = [make_result(rid, f"h{i}") for i in range(9)]
    # Valid by the contract, but no partition can take them: 40 days old (past retention)
    # and 3 years ahead.
    now = datetime.now(UTC)
    results[3] = make_result(rid, "old", finished_at=now - timedelta(days=40))
    results[7] = make_result(rid, "future", finished_at=now + timedelta(days=1100))
    out = await store.write(WriteBatch(results=result_items(results, 100)))
    assert out.results_inserted == 7
    assert out.rejected == 2
    assert sorted(d.offset for d in out.dead) == [103, 107]
    dsn = store.settings.pg_dsn.get_secret_value()
    hosts = {r[0] for r in await fetch(dsn, "SELECT host FROM results")}
    assert hosts == {f"h{i}" for i in range(9) if i not in (3, 7)}
    dead = await fetch(
        dsn, "SELECT source_offset, error_type, error_message, instance FROM dead_letters"
    )
    assert sorted(r[0] for r in dead) == [103, 107]
    for row in dead:
        assert row[1] == "CheckViolationError"
        assert "no partition of relation" in row[2]
        assert "outside the time the results table keeps" in row[2]
        assert row[3] == "sink-test-1"
    # A redelivery of the same batch changes nothing.
    again = await store.write(WriteBatch(results=result_items(results, 100)))
    assert (again.results_inserted, again.results_duplicate, again.rejected) == (0, 7, 2)
    assert (await fetch(dsn, "SELECT count(*) FROM dead_letters"))[0][0] == 2


async def test_a_refused_record_in_a_direct_copy_is_isolated_too(store: Store) -> None:
    rid = str(uuid.uuid4())
    await store.write(WriteBatch(results=result_items([make_result(rid, "warm-up")])))
    results = [make_result(rid, f"h{i}") for i in range(5)]
    results[2] = make_result(rid, "old", finished_at=datetime.now(UTC) - timedelta(days=40))

    out = await store.write(WriteBatch(results=result_items(results, 10)))

    assert (out.path, out.results_inserted, out.rejected) == ("split", 4, 1)
    assert [d.offset for d in out.dead] == [12]


async def test_an_older_result_within_retention_gets_its_partition_on_demand(store: Store) -> None:
    old = make_result(str(uuid.uuid4()), "h1", finished_at=datetime.now(UTC) - timedelta(days=12))
    out = await store.write(WriteBatch(results=result_items([old])))
    assert out.results_inserted == 1
    name = f"results_p{parse_timestamp(old.finished_at):%Y%m%d}"
    assert (
        await fetch(store.settings.pg_dsn.get_secret_value(), "SELECT to_regclass($1)::text", name)
    )[0][0] == name


@pytest.mark.parametrize(
    "stdout",
    [
        b"nul\x00in the middle\x00",
        b"\xff\xfe not utf-8 \xc3\x28",
        bytes(range(256)) * 4096,  # 1 MiB of every byte value
        "é€😀 text\n".encode() * 65536,  # ~1 MiB of multi-byte UTF-8
        b"",
    ],
    ids=["nul", "not-utf8", "1mib-binary", "1mib-utf8", "empty"],
)
async def test_any_output_round_trips_through_the_contract_encoding(
    store: Store, stdout: bytes
) -> None:
    r = make_result(str(uuid.uuid4()), "h1", stdout=stdout)
    await store.write(WriteBatch(results=result_items([r])))
    row = (
        await fetch(
            store.settings.pg_dsn.get_secret_value(),
            "SELECT stdout, stdout_encoding, stdout_bytes, stdout_sha256 FROM results",
        )
    )[0]
    assert decode_output(row[0], row[1]) == stdout
    assert (row[2], row[3]) == (len(stdout), r.stdout_sha256)


def _request(rid: str) -> Request:
    return make_request(
        rid,
        targets=["h[1-5]"],
        labels={"team": "web"},
        submitted_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


# --- the statuses of a request, merged by the upsert -------------------------------------------


SEC = timedelta(seconds=1)


def _at(t: datetime) -> str:
    return format_timestamp(t)


def _redelivered_request(rid: str, t0: datetime) -> list[Status]:
    """The statuses of a request whose collector died after completing it and before its offset
    was committed: another collector accepted and ran it again. One status is delivered twice."""
    request = _request(rid)
    first = Status.accepted(request, targets_total=5, collector="c-1", at=_at(t0))
    done = Status.completed(
        rid, make_counts(ok=4, failed=1), duration_ms=1234, collector="c-1", at=_at(t0 + SEC)
    )
    again = Status.accepted(request, targets_total=5, collector="c-2", at=_at(t0 + 3 * SEC))
    done_again = Status.completed(
        rid, make_counts(ok=5), duration_ms=2000, collector="c-2", at=_at(t0 + 6 * SEC)
    )
    return [first, done, first, again, done_again]


def _schedules(n: int) -> Iterator[list[list[int]]]:
    """Every order of n statuses, each cut into consecutive flushes in every possible way."""
    for order in itertools.permutations(range(n)):
        for cuts in range(2 ** (n - 1)):
            flushes = [[order[0]]]
            for i in range(1, n):
                if cuts >> (i - 1) & 1:
                    flushes.append([])
                flushes[-1].append(order[i])
            yield flushes


async def _write_schedules(
    store: Store, statuses: Sequence[Status], *, bare_rows: bool
) -> list[str]:
    """Write `statuses` once per schedule, each schedule under a request_id of its own; all
    schedules' first flushes go in one store.write, then all second flushes, and so on (the
    upsert merges per request_id, so schedules never meet). With `bare_rows`, every other
    request also gets a result in its first flush: its requests row exists before any status.
    Returns the request_ids, one per schedule."""
    rows = [request_row(s) for s in statuses]
    schedules = list(_schedules(len(statuses)))
    ids = [str(uuid.uuid4()) for _ in schedules]
    offset = 0
    for flush in range(len(statuses)):
        batch = WriteBatch()
        for n, (rid, schedule) in enumerate(zip(ids, schedules, strict=True)):
            if flush >= len(schedule):
                continue
            for i in schedule[flush]:
                batch.requests.append(((rid, *rows[i][1:]), _record("t.status", offset)))
                offset += 1
            if bare_rows and flush == 0 and n % 2:
                row = result_row(make_result(rid, "h1"), 0, offset)
                batch.results.append((row, _record("t.results", offset)))
                offset += 1
        if batch.requests:
            await store.write(batch)
    return ids


async def _stored_requests(dsn: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """request_id → its stored row (without updated_at, which says when, not what)."""
    rows = await fetch(dsn, "SELECT * FROM requests WHERE request_id = ANY($1::uuid[])", ids)
    return {
        str(r["request_id"]): {k: v for k, v in r.items() if k not in ("request_id", "updated_at")}
        for r in rows
    }


def _frozen(row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(row.items()))


async def test_statuses_in_any_order_duplicated_in_any_flushes_give_one_row(store: Store) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    template = _redelivered_request(str(uuid.uuid4()), t0)
    ids = await _write_schedules(store, template, bare_rows=True)
    assert len(ids) == 120 * 16
    stored = await _stored_requests(store.settings.pg_dsn.get_secret_value(), ids)
    assert sorted(stored) == sorted(ids)
    distinct = {_frozen(row) for row in stored.values()}
    assert len(distinct) == 1, f"{len(distinct)} different rows, e.g. {list(distinct)[:2]}"
    row = next(iter(stored.values()))
    assert row["state"] == "completed"
    # Details from whichever status had them.
    assert (row["principal"], row["command"], row["targets"]) == ("alice", "uname -r", ["h[1-5]"])
    assert row["labels"] == '{"team": "web"}'
    assert row["submitted_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    # The earliest acceptance, the latest completion with its counts and duration.
    assert row["accepted_at"] == t0
    assert row["completed_at"] == t0 + 6 * SEC
    assert (row["count_ok"], row["count_failed"], row["duration_ms"]) == (5, 0, 2000)
    assert row["targets_total"] == 5
    assert (row["first_status_at"], row["last_status_at"]) == (t0, t0 + 6 * SEC)
    assert (row["rejected_at"], row["reject_reason"]) == (None, None)
    assert row["collector"] in ("c-1", "c-2")


async def test_two_completions_at_the_same_instant_are_chosen_by_content(store: Store) -> None:
    # Two collectors completing the request in the same microsecond: the row must not depend on
    # which completion was stored first.
    t0 = datetime.now(UTC).replace(microsecond=0)
    rid = str(uuid.uuid4())
    statuses = [
        Status.accepted(_request(rid), targets_total=5, collector="c-1", at=_at(t0)),
        Status.completed(
            rid, make_counts(ok=5), duration_ms=900, collector="c-1", at=_at(t0 + SEC)
        ),
        Status.completed(
            rid, make_counts(ok=4, timeout=1), duration_ms=900, collector="c-2", at=_at(t0 + SEC)
        ),
        Status.completed(
            rid, make_counts(ok=3, error=2), duration_ms=800, collector="c-3", at=_at(t0 + SEC)
        ),
    ]
    ids = await _write_schedules(store, statuses, bare_rows=False)
    stored = await _stored_requests(store.settings.pg_dsn.get_secret_value(), ids)
    assert len({_frozen(row) for row in stored.values()}) == 1
    row = stored[ids[0]]
    assert row["completed_at"] == t0 + SEC
    counts = {c: row[f"count_{c}"] for c in ("ok", "timeout", "error")}
    assert (row["duration_ms"], counts) in [
        (900, {"ok": 5, "timeout": 0, "error": 0}),
        (900, {"ok": 4, "timeout": 1, "error": 0}),
    ]


async def test_a_rejection_keeps_its_earliest_time_and_the_details_of_any_status(
    store: Store,
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    rid = str(uuid.uuid4())
    reason = "targets[0]: '@web' is not a group"
    other = "h[1-5]: 5 hosts, more than this collector's limit of 4"
    statuses = [
        # One collector could not read the request; another could, and kept its details (and
        # refused it for another reason: collectors with different configuration).
        Status.rejected(rid, reason, collector="c-1", at=_at(t0 + 2 * SEC)),
        Status.rejected(rid, other, collector="c-2", request=_request(rid), at=_at(t0 + 5 * SEC)),
        Status.rejected(rid, reason, collector="c-1", at=_at(t0 + 2 * SEC)),
        Status.rejected(rid, reason, collector="c-1", at=_at(t0 + SEC)),
    ]
    ids = await _write_schedules(store, statuses, bare_rows=False)
    stored = await _stored_requests(store.settings.pg_dsn.get_secret_value(), ids)
    assert len({_frozen(row) for row in stored.values()}) == 1
    row = stored[ids[0]]
    assert (row["state"], row["rejected_at"], row["reject_reason"]) == (
        "rejected",
        t0 + SEC,
        reason,
    )
    assert (row["principal"], row["command"], row["targets"]) == ("alice", "uname -r", ["h[1-5]"])
    assert (row["accepted_at"], row["completed_at"], row["count_ok"]) == (None, None, None)
    assert (row["first_status_at"], row["last_status_at"]) == (t0 + SEC, t0 + 5 * SEC)


@pytest.mark.parametrize("order", ["accepted-first", "completed-first", "same-flush"])
async def test_request_rows_merge_statuses_in_any_order_across_flushes(
    store: Store, order: str
) -> None:
    rid = str(uuid.uuid4())
    t0 = datetime.now(UTC)
    accepted = Status.accepted(_request(rid), targets_total=5, collector="c-1", at=_at(t0))
    completed = Status.completed(
        rid, make_counts(ok=4, failed=1), duration_ms=1234, collector="c-1", at=_at(t0 + SEC)
    )
    statuses = [accepted, completed] if order != "completed-first" else [completed, accepted]
    flushes = [statuses] if order == "same-flush" else [[s] for s in statuses]
    for offset, flush in enumerate(flushes):
        out = await store.write(WriteBatch(requests=status_items(flush, offset)))
        assert out.requests_upserted == 1  # the statuses of one request are one upserted row
    row = (await fetch(store.settings.pg_dsn.get_secret_value(), "SELECT * FROM requests"))[0]
    assert row["state"] == "completed"
    assert (row["principal"], row["command"], row["targets"]) == ("alice", "uname -r", ["h[1-5]"])
    assert row["accepted_at"] == t0
    assert row["completed_at"] == t0 + SEC
    assert (row["count_ok"], row["count_failed"], row["targets_total"]) == (4, 1, 5)
    assert row["duration_ms"] == 1234
    assert (row["first_status_at"], row["last_status_at"]) == (t0, t0 + SEC)


async def test_rejected_requests_are_recorded(store: Store) -> None:
    rid = str(uuid.uuid4())
    status = Status.rejected(rid, "targets[0]: '@web' is not a group", collector="c-1")
    out = await store.write(WriteBatch(requests=status_items([status], 1)))
    row = (
        await fetch(
            store.settings.pg_dsn.get_secret_value(), "SELECT state, reject_reason FROM requests"
        )
    )[0]
    assert tuple(row) == ("rejected", "targets[0]: '@web' is not a group")
    assert (out.path, out.requests_upserted) == ("none", 1)  # no results in this flush


async def test_who_cancelled_a_request_and_why_is_kept(store: Store) -> None:
    request = make_request()
    rid = request.request_id
    cancel = Cancel.new(rid, principal="oncall", reason="wrong hosts")
    statuses = [
        Status.accepted(request, targets_total=2, collector="c-1"),
        Status.completed(
            rid, make_counts(ok=1, skipped=1), duration_ms=5, collector="c-1", cancel=cancel
        ),
    ]
    await store.write(WriteBatch(requests=status_items(statuses[::-1], 1)))
    first_cancel = Cancel.new(str(uuid.uuid4()), principal="ops", reason="not today")
    rejected = Status.rejected(
        first_cancel.request_id, first_cancel.message, collector="c-1", cancel=first_cancel
    )
    await store.write(WriteBatch(requests=status_items([rejected], 3)))
    rows = await fetch(
        store.settings.pg_dsn.get_secret_value(),
        "SELECT request_id::text, state, cancelled_by, cancel_reason FROM request_summary",
    )
    assert {tuple(r) for r in rows} == {
        (rid, "completed", "oncall", "wrong hosts"),
        (first_cancel.request_id, "rejected", "ops", "not today"),
    }


async def test_the_views_answer_the_common_questions(store: Store) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    same = b"Linux 6.1.0-21-amd64\n"
    results = [
        make_result(a, "web1", stdout=same, finished_at=t0 + timedelta(seconds=1)),
        make_result(a, "web2", stdout=same, finished_at=t0 + timedelta(seconds=2)),
        make_result(a, "web4", stdout=b"Linux 5.10\n", finished_at=t0 + timedelta(seconds=3)),
        make_result(a, "web5", status="failed", stdout=b"", finished_at=t0 + timedelta(seconds=4)),
        # web3 failed once, then its second attempt succeeded: attempt 2 is its final result
        make_result(a, "web3", status="failed", finished_at=t0 + timedelta(seconds=2)),
        make_result(a, "web3", attempt=2, stdout=same, finished_at=t0 + timedelta(seconds=5)),
        # a later request ran on web1 again
        make_result(b, "web1", stdout=b"later\n", finished_at=t0 + timedelta(minutes=5)),
    ]
    statuses = [
        Status.accepted(_request(a), targets_total=5, collector="c-1", at=_at(t0)),
        Status.completed(
            a,
            make_counts(ok=4, failed=1),
            duration_ms=5000,
            collector="c-1",
            at=_at(t0 + timedelta(seconds=6)),
        ),
    ]
    await store.write(WriteBatch(results=result_items(results), requests=status_items(statuses)))
    dsn = store.settings.pg_dsn.get_secret_value()

    summary = (await fetch(dsn, "SELECT * FROM request_summary WHERE request_id = $1", a))[0]
    assert summary["state"] == "completed"
    assert (summary["targets_total"], summary["hosts_reported"], summary["hosts_missing"]) == (
        5,
        5,
        0,
    )
    assert (summary["ok"], summary["failed"]) == (4, 1)
    assert summary["first_started_at"] == t0 + timedelta(seconds=1) - timedelta(milliseconds=20)
    assert summary["last_finished_at"] == t0 + timedelta(seconds=5)
    assert summary["duration"] == timedelta(seconds=4, milliseconds=20)
    # A request known only from its results still has a summary (its statuses may lag).
    only = (
        await fetch(
            dsn, "SELECT state, hosts_reported FROM request_summary WHERE request_id = $1", b
        )
    )[0]
    assert tuple(only) == (None, 1)
    latest_first = await fetch(
        dsn, "SELECT request_id::text FROM request_summary ORDER BY submitted_at DESC NULLS LAST"
    )
    assert [r[0] for r in latest_first] == [a, b]

    latest = await fetch(
        dsn, "SELECT host, request_id::text, attempt FROM host_latest_result ORDER BY host"
    )
    assert [tuple(r) for r in latest] == [
        ("web1", b, 1),
        ("web2", a, 1),
        ("web3", a, 2),
        ("web4", a, 1),
        ("web5", a, 1),
    ]

    groups = await fetch(
        dsn,
        "SELECT status, host_count, hosts, sample_stdout, sample_stdout_encoding "
        "FROM request_output_groups WHERE request_id = $1 ORDER BY host_count DESC, status",
        a,
    )
    assert [(g[0], g[1], g[2]) for g in groups] == [
        ("ok", 3, ["web1", "web2", "web3"]),
        ("failed", 1, ["web5"]),
        ("ok", 1, ["web4"]),
    ]
    assert decode_output(groups[0][3], groups[0][4]) == same
