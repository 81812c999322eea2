"""The sink as a process against real Kafka and PostgreSQL: exactly once, replay, poison, groups."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Status, decode_dead_letter, decode_output, encode, format_timestamp
from stack.config import TOPIC_PARTITIONS
from stack.env import StackEnv, kafka_options
from stack.topics import committed_total
from tests.support.kafka import Topics, consume_n
from tests.support.records import make_counts, make_request
from tests.support.sink import (
    MakeSink,
    fetch,
    key_of,
    make_result,
    produce,
    produce_results,
    results_for,
    stored_keys,
    wait_committed,
    wait_for_rows,
)


def _statuses(request_id: str, hosts: int, at: datetime) -> list[Status]:
    request = make_request(
        request_id, targets=[f"host[0000-{hosts - 1:04d}].test"], submitted_at=at
    )
    return [
        Status.accepted(
            request,
            targets_total=hosts,
            collector="collector-test-1",
            at=format_timestamp(at),
        ),
        Status.completed(
            request_id,
            make_counts(ok=hosts),
            duration_ms=1500,
            collector="collector-test-1",
            at=format_timestamp(at + timedelta(seconds=2)),
        ),
    ]


async def test_each_result_lands_once_with_its_request(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    results = results_for(600, hosts_per_request=10)
    request_ids = sorted({r.request_id for r in results})
    statuses = [s for rid in request_ids for s in _statuses(rid, 10, datetime.now(UTC))]
    # Half of the requests' statuses arrive completed-first.
    statuses = [s for i, s in enumerate(statuses) if (i // 2) % 2 == 0] + [
        s for i, s in reversed(list(enumerate(statuses))) if (i // 2) % 2 == 1
    ]
    await produce_results(stack_env.kafka_bootstrap, topics["results"], results)
    await produce(
        stack_env.kafka_bootstrap,
        topics["status"],
        ((s.request_id.encode(), encode(s)) for s in statuses),
    )
    sink = sinks(batch_max_rows=100)
    await sink.start()
    await wait_for_rows(pg_dsn, 600, timeout_s=60)
    await wait_committed(stack_env.kafka_bootstrap, sink.group, topics["results"], 600, 30)
    await wait_committed(stack_env.kafka_bootstrap, sink.group, topics["status"], len(statuses), 30)

    assert Counter(await stored_keys(pg_dsn)) == Counter(key_of(r) for r in results)
    rows = await fetch(pg_dsn, "SELECT host, stdout, stdout_encoding, labels FROM results")
    by_host = {(r[0], r[1]) for r in rows}
    assert all(decode_output(out, "utf-8") == f"hello from {h}\n".encode() for h, out in by_host)
    assert orjson.loads(rows[0][3]) == {"suite": "sink"}
    requests = await fetch(
        pg_dsn, "SELECT state, count_ok, targets_total, accepted_at IS NOT NULL FROM requests"
    )
    assert len(requests) == len(request_ids)
    assert {tuple(r) for r in requests} == {("completed", 10, 10, True)}

    status, body = await sink.get("/healthz")
    health = orjson.loads(body)
    assert (status, health["ok"], health["database"]) == (200, True, "up")
    assert health["assigned_partitions"] == TOPIC_PARTITIONS["results"] + TOPIC_PARTITIONS["status"]
    assert await sink.metric('fleetrun_sink_rows_written_total{table="results"}') == 600
    assert await sink.metric("fleetrun_sink_batch_rows_count") >= 6
    assert await sink.metric("fleetrun_sink_dead_letters_total") == 0
    # The lag gauges are refreshed every second.
    await sink.wait_metric("fleetrun_sink_consumer_lag", lambda lag: lag == 0, timeout_s=10)
    assert await sink.stop() == 0
    assert "sink stopped" in sink.log()


async def _rewind(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 0 on every partition of `topic` for `group` (the sink is stopped)."""
    consumer = AIOKafkaConsumer(
        **kafka_options(bootstrap), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(TOPIC_PARTITIONS["results"])]
        consumer.assign(parts)
        await consumer.commit(dict.fromkeys(parts, 0))
    finally:
        await consumer.stop()


async def test_replayed_results_are_not_stored_twice(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    results = results_for(300)
    await produce_results(stack_env.kafka_bootstrap, topics["results"], results)
    first = sinks()
    await first.start()
    await wait_committed(stack_env.kafka_bootstrap, first.group, topics["results"], 300, 60)
    assert await first.stop() == 0

    await _rewind(stack_env.kafka_bootstrap, first.group, topics["results"])
    second = sinks()
    await second.start()
    await wait_committed(stack_env.kafka_bootstrap, second.group, topics["results"], 300, 60)
    # Every record was read and written again, and skipped by the idempotency key.
    assert await second.metric("fleetrun_sink_records_consumed_total") == 300
    assert await second.metric("fleetrun_sink_duplicate_results_total") == 300
    assert Counter(await stored_keys(pg_dsn)) == Counter(key_of(r) for r in results)


async def test_poison_records_go_to_the_dead_letters_and_their_neighbours_are_stored(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    rid = str(uuid.uuid4())
    key = rid.encode()
    good = [make_result(rid, f"good{i:02d}") for i in range(20)]
    too_late = make_result(rid, "future", finished_at=datetime.now(UTC) + timedelta(days=3650))
    unknown_major = encode(make_result(rid, "v2")).replace(
        b'"fleetrun.result/1"', b'"fleetrun.result/2"'
    )
    poison = {
        5: b"this is not json",
        11: encode(too_late),  # valid, but no partition will ever take it
        17: unknown_major,
    }
    values: list[tuple[bytes | None, bytes]] = []
    for r in good:
        if len(values) in poison:
            values.append((key, poison[len(values)]))
        values.append((key, encode(r)))
    # Same key: one partition, so every record is in the same batch.
    await produce(stack_env.kafka_bootstrap, topics["results"], values)
    status_values = [
        (key, encode(_statuses(rid, 20, datetime.now(UTC))[0])),
        (key, b'{"schema": "fleetrun.status/1", "request_id": "' + key + b'"}'),
    ]
    await produce(stack_env.kafka_bootstrap, topics["status"], status_values)

    # Held for the linger, not written as soon as caught up: one batch, as the premise says.
    sink = sinks(linger_ms=1000, batch_max_rows=1000, flush_caught_up=False)
    await sink.start()
    await wait_for_rows(pg_dsn, 4, table="dead_letters", timeout_s=60)
    await wait_committed(stack_env.kafka_bootstrap, sink.group, topics["results"], len(values), 30)
    await wait_committed(stack_env.kafka_bootstrap, sink.group, topics["status"], 2, 30)

    assert sorted(h for _, h, _ in await stored_keys(pg_dsn)) == [r.host for r in good]
    dead = await fetch(
        pg_dsn,
        "SELECT source_topic, source_offset, value, request_id::text, error_type, error_message "
        "FROM dead_letters ORDER BY source_topic, source_offset",
    )
    results_dead = [d for d in dead if d[0] == topics["results"]]
    assert [d[1] for d in results_dead] == sorted(poison)
    for d in results_dead:
        assert d[2] == poison[d[1]]  # the bytes as they came
    assert "not valid JSON" in results_dead[0][5]
    assert "no partition" in results_dead[1][5]
    assert results_dead[1][4] == "CheckViolationError"
    assert 'unsupported schema version "fleetrun.result/2"' in results_dead[2][5]
    assert results_dead[1][3] == rid  # request_id read from the record for correlation
    status_dead = [d for d in dead if d[0] == topics["status"]]
    assert [d[1] for d in status_dead] == [1]
    assert (await fetch(pg_dsn, "SELECT state FROM requests"))[0][0] == "accepted"

    on_topic = await consume_n(stack_env.kafka_bootstrap, topics["dlq"], 4)
    letters = sorted(
        (decode_dead_letter(v) for _, v in on_topic), key=lambda d: (d.source_topic, d.offset)
    )
    assert [(d.source_topic, d.offset, d.stage) for d in letters] == [
        (d[0], d[1], "sink") for d in dead
    ]
    assert [d.value for d in letters] == [d[2] for d in dead]
    assert await sink.metric("fleetrun_sink_dead_letters_total") == 4


async def test_outputs_of_any_shape_and_size_go_through_kafka_intact(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    rid = str(uuid.uuid4())
    outputs = {
        "nul": b"before\x00after\x00",
        "not-utf8": b"\xff\xfe\xfd latin-1: caf\xe9",
        "binary-1mib": bytes(range(256)) * 4096,
        "text-1mib": ("ligne numéro ✓\n" * 65536).encode()[: 1 << 20],
    }
    results = [make_result(rid, host, stdout=out) for host, out in outputs.items()]
    await produce_results(stack_env.kafka_bootstrap, topics["results"], results)
    sink = sinks()
    await sink.start()
    await wait_for_rows(pg_dsn, len(results), timeout_s=60)
    rows = await fetch(
        pg_dsn, "SELECT host, stdout, stdout_encoding, stdout_bytes, stdout_sha256 FROM results"
    )
    got = {r[0]: r for r in rows}
    for host, out in outputs.items():
        _, text, encoding, size, digest = got[host]
        assert decode_output(text, encoding) == out, host
        assert (size, digest) == (len(out), results[list(outputs).index(host)].stdout_sha256)
    assert got["nul"][2] == got["not-utf8"][2] == got["binary-1mib"][2] == "base64"
    assert got["text-1mib"][2] == "utf-8"
    assert await sink.metric("fleetrun_sink_dead_letters_total") == 0


async def test_two_sinks_in_one_group_share_the_partitions(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    first_half, second_half = results_for(500), results_for(500)
    a = sinks()
    await a.start()
    await produce_results(stack_env.kafka_bootstrap, topics["results"], first_half)
    b = sinks()
    await b.start()  # joins the group: a rebalance while records flow
    await produce_results(stack_env.kafka_bootstrap, topics["results"], second_half)
    await wait_committed(stack_env.kafka_bootstrap, a.group, topics["results"], 1000, 60)
    assert Counter(await stored_keys(pg_dsn)) == Counter(
        key_of(r) for r in first_half + second_half
    )
    shares = [orjson.loads((await s.get("/healthz"))[1])["assigned_partitions"] for s in (a, b)]
    assert sum(shares) == TOPIC_PARTITIONS["results"] + TOPIC_PARTITIONS["status"]
    assert min(shares) > 0


async def test_sigterm_flushes_what_is_buffered_and_commits_it(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    results = results_for(200)
    # A linger far longer than the test, and no flush on catching up: only the shutdown can
    # flush these.
    sink = sinks(linger_ms=600000, flush_caught_up=False)
    await sink.start()
    await produce_results(stack_env.kafka_bootstrap, topics["results"], results)
    await sink.wait_metric(
        "fleetrun_sink_records_consumed_total", lambda count: count >= len(results), timeout_s=30
    )
    assert await stored_keys(pg_dsn) == []
    assert await sink.stop() == 0
    assert Counter(await stored_keys(pg_dsn)) == Counter(key_of(r) for r in results)
    committed = await committed_total(stack_env.kafka_bootstrap, sink.group, topics["results"])
    assert committed == len(results)
