"""The sink's PostgreSQL side against a real server: writes, merges, splitting, views."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from schemas import Request, Result, Status, StatusCounts, decode_output
from sink.app import run_migrations
from sink.partitions import Partitions
from sink.rows import SourceRecord, merge_requests, result_row
from sink.settings import SinkSettings
from sink.store import ResultItem, Store, WriteBatch
from tests.support.sink import fetch, make_result


class Rec:
    """The fields of a Kafka record the store keeps for dead letters."""

    def __init__(self, topic: str, offset: int, value: bytes = b"{}") -> None:
        self.topic, self.partition, self.offset = topic, 0, offset
        self.timestamp, self.key, self.value = 1_700_000_000_000, b"k", value


def settings_for(dsn: str) -> SinkSettings:
    return SinkSettings(pg_dsn=dsn, topic_prefix="t.", sink_id="sink-test-1")


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
        (result_row(r, 0, first_offset + i), Rec("t.results", first_offset + i))
        for i, r in enumerate(results)
    ]


async def test_a_batch_is_stored_once_however_often_it_is_written(store: Store) -> None:
    rid = str(uuid.uuid4())
    batch = WriteBatch(results=result_items([make_result(rid, f"h{i}") for i in range(50)]))
    first = await store.write(batch)
    again = await store.write(batch)
    assert (first.results_inserted, first.results_duplicate) == (50, 0)
    assert (again.results_inserted, again.results_duplicate) == (0, 50)
    rows = await fetch(store.settings.pg_dsn, "SELECT count(*) FROM results")
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
    dsn = store.settings.pg_dsn
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
    dsn = store.settings.pg_dsn
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
    name = f"results_p{old.finished_at:%Y%m%d}"
    assert (await fetch(store.settings.pg_dsn, "SELECT to_regclass($1)::text", name))[0][0] == name


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
            store.settings.pg_dsn,
            "SELECT stdout, stdout_encoding, stdout_bytes, stdout_sha256 FROM results",
        )
    )[0]
    assert decode_output(row[0], row[1]) == stdout
    assert (row[2], row[3]) == (len(stdout), r.stdout_sha256)


def _request(rid: str) -> Request:
    return Request(
        request_id=rid,
        submitted_at=datetime(2026, 1, 1, tzinfo=UTC),
        principal="alice",
        command="uname -r",
        targets=("h[1-5]",),
        labels={"team": "web"},
    )


@pytest.mark.parametrize("order", ["accepted-first", "completed-first", "same-flush"])
async def test_request_rows_merge_statuses_in_any_order_across_flushes(
    store: Store, order: str
) -> None:
    rid = str(uuid.uuid4())
    t0 = datetime.now(UTC)
    accepted = Status.accepted(_request(rid), targets_total=5, collector="c-1", at=t0)
    completed = Status.completed(
        rid, StatusCounts(ok=4, failed=1), duration_ms=1234, collector="c-1", at=t0 + timedelta(1)
    )
    statuses = [accepted, completed] if order != "completed-first" else [completed, accepted]
    flushes = [statuses] if order == "same-flush" else [[s] for s in statuses]
    for offset, flush in enumerate(flushes):
        pairs: list[tuple[Status, SourceRecord]] = [(s, Rec("t.status", offset)) for s in flush]
        items = merge_requests(pairs)
        await store.write(WriteBatch(requests=items))
    row = (await fetch(store.settings.pg_dsn, "SELECT * FROM requests"))[0]
    assert row["state"] == "completed"
    assert (row["principal"], row["command"], row["targets"]) == ("alice", "uname -r", ["h[1-5]"])
    assert row["accepted_at"] == t0
    assert row["completed_at"] == t0 + timedelta(1)
    assert (row["count_ok"], row["count_failed"], row["targets_total"]) == (4, 1, 5)
    assert row["duration_ms"] == 1234
    assert (row["first_status_at"], row["last_status_at"]) == (t0, t0 + timedelta(1))


async def test_rejected_requests_are_recorded(store: Store) -> None:
    rid = str(uuid.uuid4())
    status = Status.rejected(rid, "targets[0]: '@web' is not a group", collector="c-1")
    out = await store.write(WriteBatch(requests=merge_requests([(status, Rec("t.status", 1))])))
    row = (await fetch(store.settings.pg_dsn, "SELECT state, reject_reason FROM requests"))[0]
    assert tuple(row) == ("rejected", "targets[0]: '@web' is not a group")
    assert (out.path, out.requests_upserted) == ("none", 1)  # no results in this flush


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
        Status.accepted(_request(a), targets_total=5, collector="c-1", at=t0),
        Status.completed(
            a,
            StatusCounts(ok=4, failed=1),
            duration_ms=5000,
            collector="c-1",
            at=t0 + timedelta(seconds=6),
        ),
    ]
    pairs: list[tuple[Status, SourceRecord]] = [
        (s, Rec("t.status", i)) for i, s in enumerate(statuses)
    ]
    requests = merge_requests(pairs)
    await store.write(WriteBatch(results=result_items(results), requests=requests))
    dsn = store.settings.pg_dsn

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
