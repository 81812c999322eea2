"""The collector in-process against real Kafka and the stack's real sshd hosts (and simfleet)."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

import schemas
from schemas import Request, format_timestamp, known
from stack.env import StackEnv
from stack.simfleet import running_fleet
from tests.support.collector import (
    collector_settings,
    counts_by_host,
    finished,
    read_until,
    request_partitions,
    running_collector,
    ssh_all,
    submit,
    wait_committed,
)
from tests.support.kafka import Topics
from tests.support.records import make_counts

DEMO = ("demo1", "demo2", "demo3")


def _request(command: str, targets: tuple[str, ...] = ("@demo",), **options: Any) -> Request:
    return Request.new(principal="tests", command=command, targets=targets, **options)


async def test_three_demo_hosts_ok_then_completed_and_committed(topics: Topics) -> None:
    settings = collector_settings(topics.prefix)
    request = _request("uname -n; echo out; echo err >&2")
    async with running_collector(settings):
        placed = await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
        await wait_committed(
            topics.bootstrap, settings.group_id, topics["requests"], request_partitions(placed)
        )
    results, statuses = seen.for_request(request.request_id)
    assert sorted(r.host for r in results) == list(DEMO)
    assert {r.status for r in results} == {"ok"}
    assert all(r.stdout_data.endswith(b"out\n") and r.stderr_data == b"err\n" for r in results)
    assert [s.state for s in statuses] == ["accepted", "completed"]
    accepted, completed = statuses
    assert accepted.targets_total == 3
    assert completed.counts == make_counts(ok=3)
    assert completed.targets_total == completed.counts.total == 3


async def test_non_zero_exit_is_failed(topics: Topics) -> None:
    request = _request("echo bad >&2; exit 3")
    async with running_collector(collector_settings(topics.prefix)):
        await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
    results, _ = seen.for_request(request.request_id)
    assert [(r.status, r.exit_status, r.stderr_data) for r in results] == [
        ("failed", 3, b"bad\n")
    ] * 3
    completed = seen.completed(request.request_id)
    assert completed is not None
    assert completed.counts == make_counts(failed=3)


async def test_error_budget_skips_hosts_not_yet_started(topics: Topics) -> None:
    # concurrency 1 runs demo1 first; its failure spends max_errors=0, so 2 and 3 never start.
    request = _request("exit 1", ("demo[1-3]",), max_errors=0, concurrency=1)
    async with running_collector(collector_settings(topics.prefix)) as running:
        await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
        assert running.sample("fleetrun_collector_command_seconds_count") == 1
    results, _ = seen.for_request(request.request_id)
    assert [(r.host, r.status) for r in results] == [
        ("demo1", "failed"),
        ("demo2", "skipped"),
        ("demo3", "skipped"),
    ]
    completed = seen.completed(request.request_id)
    assert completed is not None
    assert completed.counts == make_counts(failed=1, skipped=2)


async def test_expired_request_runs_nothing(
    topics: Topics, stack_env: StackEnv, remote_tag: str
) -> None:
    marker = f"/tmp/fleetrun-expired-{remote_tag}-marker"  # removed by remote_tag if made
    now = datetime.now(UTC)
    request = Request(
        request_id=str(uuid.uuid4()),
        submitted_at=format_timestamp(now - timedelta(minutes=2)),
        expires_at=format_timestamp(now - timedelta(minutes=1)),
        principal="tests",
        command=f"touch {marker}",
        targets=("@demo",),
    )
    async with running_collector(collector_settings(topics.prefix)):
        placed = await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
        await wait_committed(
            topics.bootstrap,
            topics.prefix + "collector",
            topics["requests"],
            request_partitions(placed),
        )
    results, statuses = seen.for_request(request.request_id)
    assert sorted((r.host, r.status) for r in results) == [(h, "expired") for h in DEMO]
    assert [s.state for s in statuses] == ["accepted", "completed"]
    # Proof that nothing ran: the command would have created the marker on every host.
    outs = await ssh_all(stack_env, f"test -e {marker} && echo present || echo absent")
    for name, out in outs.items():
        assert out.strip() == "absent", name


async def test_invalid_request_goes_to_the_dlq_with_a_rejected_status(topics: Topics) -> None:
    good = _request("true")
    doc = schemas.as_document(good) | {"concurrency": 0}  # valid id, invalid field
    invalid = orjson.dumps(doc)
    not_json = b"\xff not json"
    future = orjson.dumps(schemas.as_document(_request("true")) | {"schema": "fleetrun.request/2"})
    async with running_collector(collector_settings(topics.prefix)) as running:
        placed = await submit(
            topics.bootstrap, topics["requests"], [invalid, not_json, future], key=b"k1"
        )
        seen = await read_until(
            topics.bootstrap,
            topics.prefix,
            lambda s: len(s.dead_letters) >= 3 and len(s.statuses) >= 2,
        )
        await wait_committed(
            topics.bootstrap,
            topics.prefix + "collector",
            topics["requests"],
            request_partitions(placed),
        )
        assert running.sample("fleetrun_collector_dead_letters_total") == 3
        assert running.sample("fleetrun_collector_command_seconds_count") == 0
    by_offset = {(d.partition, d.offset): d for d in seen.dead_letters}
    for (partition, offset), raw in zip(placed, [invalid, not_json, future], strict=True):
        letter = by_offset[(partition, offset)]
        assert letter.value == raw  # byte for byte
        assert letter.key == b"k1"
        assert letter.source_topic == topics["requests"]
        assert letter.stage == "collector"
    assert "concurrency" in by_offset[placed[0]].error.message
    assert "unsupported schema version" in by_offset[placed[2]].error.message
    # A rejected status for every record whose request_id could be read; none for not_json.
    rejected = {s.request_id: s for s in seen.statuses if s.state == "rejected"}
    assert set(rejected) == {good.request_id, orjson.loads(future)["request_id"]}
    assert "concurrency" in (rejected[good.request_id].reason or "")
    assert not seen.results


async def test_unknown_group_is_rejected_and_dead_lettered(topics: Topics) -> None:
    request = _request("true", ("@nosuch",))
    async with running_collector(collector_settings(topics.prefix)):
        placed = await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(
            topics.bootstrap,
            topics.prefix,
            lambda s: finished(request.request_id)(s) and bool(s.dead_letters),
        )
    _, statuses = seen.for_request(request.request_id)
    assert [s.state for s in statuses] == ["rejected"]
    reason = known(statuses[0].reason)
    assert reason is not None
    assert "'@nosuch' is not a group" in reason
    assert statuses[0].command == "true"  # the request was readable: its details are kept
    (letter,) = seen.dead_letters
    assert (letter.partition, letter.offset) == placed[0]
    assert letter.request_id == request.request_id
    assert not seen.results


async def test_second_request_reuses_pooled_connections(topics: Topics) -> None:
    first, second = _request("uname -n"), _request("uname -r")
    async with running_collector(collector_settings(topics.prefix)) as running:
        await submit(topics.bootstrap, topics["requests"], [first])
        await read_until(topics.bootstrap, topics.prefix, finished(first.request_id))
        new_before = running.sample("fleetrun_collector_connections_total", {"kind": "new"})
        reused_before = running.sample("fleetrun_collector_connections_total", {"kind": "reused"})
        await submit(topics.bootstrap, topics["requests"], [second])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(second.request_id))
        assert running.sample("fleetrun_collector_connections_total", {"kind": "new"}) == new_before
        reused = running.sample("fleetrun_collector_connections_total", {"kind": "reused"})
        assert reused - reused_before == 3
    assert new_before == 3
    completed = seen.completed(second.request_id)
    assert completed is not None
    assert completed.counts == make_counts(ok=3)


async def test_hanging_and_dead_hosts_finish_in_bounded_time(
    topics: Topics, tmp_path: Path
) -> None:
    async with running_fleet(
        7, tmp_path / "fleet", profile="ok=4,hang=2,dead=1", base_address="127.112.0.1", port=0
    ) as fleet:
        settings = collector_settings(
            topics.prefix,
            inventory=fleet.inventory,
            ssh_known_hosts=fleet.known_hosts,
            ssh_client_keys=(fleet.client_key,),
            ssh_user="sim",
        )
        request = _request("uname -n", ("@all",), timeout_s=2, connect_timeout_s=2)
        hang = _request("sim:hang", ("@ok",), timeout_s=2, connect_timeout_s=2)
        async with running_collector(settings):
            t0 = time.monotonic()
            await submit(topics.bootstrap, topics["requests"], [request, hang])
            seen = await read_until(
                topics.bootstrap,
                topics.prefix,
                finished(request.request_id, hang.request_id),
                timeout_s=30,
            )
            elapsed = time.monotonic() - t0
        killed = await fleet.wait_stats(lambda s: s["counters"]["killed"] >= 6)
    results, _ = seen.for_request(request.request_id)
    by_status = {h.name: h.behaviour for h in fleet.hosts}
    assert len(results) == 7
    assert counts_by_host(results) == {h.name: 1 for h in fleet.hosts}
    for r in results:
        expected = {"ok": "ok", "hang": "timeout", "dead": "unreachable"}[by_status[r.host]]
        assert r.status == expected, r
    hang_results, _ = seen.for_request(hang.request_id)
    assert {r.status for r in hang_results} == {"timeout"}
    assert len(hang_results) == 4
    # Deadlines, not minutes: timeout_s=2 and connect_timeout_s=2, run concurrently.
    assert elapsed < 20, elapsed
    assert killed["counters"]["killed"] >= 6  # the remote commands were killed, not left behind


async def test_output_too_large_for_one_record_is_still_published(topics: Topics) -> None:
    # 3 MB of output, 1 MiB captured per stream, and a collector limit of 300 kB per record:
    # the result is published with less output, its totals and digest those of the full stream.
    size = 3_000_000
    request = _request(
        f"head -c {size} /dev/zero | tr '\\0' x; echo done >&2",
        ("demo1",),
        max_output_bytes=1_048_576,
    )
    settings = collector_settings(topics.prefix, max_message_bytes=300_000)
    async with running_collector(settings):
        await submit(topics.bootstrap, topics["requests"], [request])
        seen = await read_until(topics.bootstrap, topics.prefix, finished(request.request_id))
    (result,) = seen.for_request(request.request_id)[0]
    assert result.status == "ok"
    assert result.stdout_bytes == size
    assert result.stdout_truncated
    assert result.stdout_sha256 == hashlib.sha256(b"x" * size).hexdigest()
    assert 100_000 < len(result.stdout_data) < 300_000
    assert result.stdout_data.startswith(b"xxx")
    assert result.stdout_data.endswith(b"xxx")
    assert b"bytes omitted]" in result.stdout_data
    assert result.stderr_data == b"done\n"
