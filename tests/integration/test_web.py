"""`fleetrun web` over HTTP against the real stack: filters and counts read from PostgreSQL (rows
stored by a real sink), the cancel button against a real collector, /healthz and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import httpx2
import orjson
import pytest

from fleetrun.cli.web.service import WebConsole
from schemas import Audit, Output, Request, Status, encode
from schemas.output import encode_output
from stack.env import StackEnv
from tests.support.collector import collector_settings, running_collector, submit
from tests.support.kafka import Topics
from tests.support.net import free_port
from tests.support.records import make_counts
from tests.support.sink import MakeSink, fetch, make_result, produce, produce_results
from tests.support.web import running_console, until, wait_for_state, web_settings

pytestmark = pytest.mark.integration

STORED_S = 60.0


@pytest.fixture
async def console(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> AsyncIterator[WebConsole]:
    await sinks().start()  # migrates the test's database on start
    async with running_console(web_settings(stack_env, topics.prefix, pg_dsn)) as running:
        yield running


def _listed(html: str) -> set[str]:
    return set(re.findall(r'data-request-id="([0-9a-f-]{36})"', html))


async def test_the_list_filters_by_principal_label_state_and_time(
    console: WebConsole, topics: Topics, pg_dsn: str
) -> None:
    alice = Request.new(principal="alice", command="uptime", targets=["a[1-2]"], labels={"t": "x"})
    bob = Request.new(principal="bob", command="df -h", targets=["b1"], labels={"t": "y"})
    carol = Request.new(principal="carol", command="rm -rf /", targets=["c1"])
    statuses = [
        Status.accepted(alice, targets_total=2, collector="c1"),
        Status.completed(
            alice.request_id, make_counts(ok=1, failed=1), duration_ms=9, collector="c1"
        ),
        Status.accepted(bob, targets_total=1, collector="c1"),
        Status.rejected(
            carol.request_id,
            "not allowed",
            collector="c1",
            request=carol,
            audit=Audit(key_fingerprint="SHA256:abc", verified=True, policy_rule="ops-web"),
        ),
    ]
    await produce(
        topics.bootstrap, topics["status"], [(s.request_id.encode(), encode(s)) for s in statuses]
    )
    await produce_results(
        topics.bootstrap,
        topics["results"],
        [
            make_result(alice.request_id, "a1"),
            make_result(alice.request_id, "a2", status="failed"),
            make_result(bob.request_id, "b1"),
        ],
    )
    await wait_for_state(pg_dsn, carol.request_id, {"rejected"}, STORED_S)
    await wait_for_state(pg_dsn, alice.request_id, {"completed"}, STORED_S)
    rows = await fetch(pg_dsn, "SELECT count(*) FROM results")
    assert rows[0][0] == 3
    everyone = {alice.request_id, bob.request_id, carol.request_id}

    async with httpx2.AsyncClient(base_url=console.url, timeout=10) as web:
        page = (await web.get("/")).text
        assert _listed(page) == everyone
        assert "1 accepted" in page
        assert "1 completed" in page
        assert "1 rejected" in page
        assert re.search(r"hosts:\s*<span[^>]*>2 ok</span>\s*<span[^>]*>1 failed</span>", page)
        assert _listed((await web.get("/", params={"principal": "bob"})).text) == {bob.request_id}
        assert _listed((await web.get("/", params={"label": "t=x"})).text) == {alice.request_id}
        assert _listed((await web.get("/", params={"state": "rejected"})).text) == {
            carol.request_id
        }
        assert _listed((await web.get("/", params={"since": "2100-01-01"})).text) == set()
        assert _listed((await web.get("/", params={"until": "2100-01-01"})).text) == everyone
        bad = (await web.get("/", params={"since": "yesterday"})).text
        assert "since &#39;yesterday&#39;: expected a date" in bad

        audited = (await web.get(f"/requests/{carol.request_id}")).text
        assert "by key <code>SHA256:abc</code> (verified)" in audited
        assert "<dt>policy rule</dt><dd>ops-web</dd>" in audited

        host = await web.get("/hosts/a2")
        assert host.status_code == 200
        assert "uptime" in host.text
        assert "hello from a2" in host.text
        assert (await web.get("/hosts/nowhere")).status_code == 404


async def test_the_cancel_button_stops_a_running_request(
    console: WebConsole, topics: Topics, pg_dsn: str
) -> None:
    async with running_collector(collector_settings(topics.prefix)):
        request = Request.new(
            principal="alice", command="sleep 60", targets=["@demo"], timeout_s=120
        )
        await submit(topics.bootstrap, topics["requests"], [request])
        rid = request.request_id
        await wait_for_state(pg_dsn, rid, {"accepted"}, STORED_S)
        async with httpx2.AsyncClient(base_url=console.url, timeout=60) as web:
            page = (await web.get(f"/requests/{rid}")).text
            assert 'id="cancel"' in page
            reply = await web.post(
                f"/requests/{rid}/cancel",
                content="reason=wrong+hosts",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert reply.status_code == 303, reply.text
            shown = (await web.get(reply.headers["location"])).text
            assert "cancel sent by web-test" in shown
            # The collector stops the commands well before their 60 s.
            await wait_for_state(pg_dsn, rid, {"completed"}, 30)
            done = (await web.get(f"/requests/{rid}")).text
            assert 'id="cancel"' not in done
    rows = await fetch(
        pg_dsn, "SELECT count_ok, duration_ms FROM requests WHERE request_id = $1::uuid", rid
    )
    assert rows[0]["count_ok"] == 0
    assert rows[0]["duration_ms"] < 30_000


async def test_cancelling_can_be_turned_off(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    await sinks().start()
    settings = web_settings(stack_env, topics.prefix, pg_dsn, allow_cancel=False)
    async with (
        running_console(settings) as console,
        httpx2.AsyncClient(base_url=console.url, timeout=10) as web,
    ):
        rid = "00000000-0000-4000-8000-000000000001"
        reply = await web.post(f"/requests/{rid}/cancel", content="")
        assert reply.status_code == 403
        assert "turned off" in reply.text


async def test_another_sites_page_cannot_press_the_cancel_button(console: WebConsole) -> None:
    async with httpx2.AsyncClient(base_url=console.url, timeout=10) as web:
        rid = "00000000-0000-4000-8000-000000000001"
        reply = await web.post(
            f"/requests/{rid}/cancel", content="", headers={"Origin": "https://evil.example"}
        )
        assert reply.status_code == 403
        assert "own page" in reply.text


async def test_health_reports_its_dependencies_and_metrics_count_pages(
    console: WebConsole,
) -> None:
    async with httpx2.AsyncClient(base_url=console.url, timeout=10) as web:
        await web.get("/")
        await until(lambda: console.health()[0], 30)  # the probes' first answers
        health = await web.get("/healthz")
        assert health.status_code == 200
        doc = health.json()
        assert doc["ok"] is True
        assert doc["live_feed"] is True
        assert set(doc["dependencies"]) == {"kafka", "database"}
        metrics = (await web.get("/metrics")).text
        assert 'fleetrun_web_pages_total{code="200",page="requests"} 1.0' in metrics


async def _next_event(lines: AsyncIterator[str]) -> tuple[str, str]:
    """The next (event name, data) of a text/event-stream, skipping comments."""
    name = data = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and name:
            return name, data
    raise AssertionError("the event stream ended")


async def test_live_events_come_from_the_topics_and_a_slow_page_is_told_to_reload(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> None:
    await sinks().start()
    settings = web_settings(stack_env, topics.prefix, pg_dsn, live_queue=5)
    rid = str(uuid.uuid4())
    async with (
        running_console(settings) as console,
        httpx2.AsyncClient(base_url=console.url, timeout=30) as web,
        web.stream("GET", f"/requests/{rid}/events") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith(": following")
        await until(lambda: console.hub.subscribers == 1, 30)
        await produce_results(topics.bootstrap, topics["results"], [make_result(rid, "h1")])
        async with asyncio.timeout(30):
            name, data = await _next_event(lines)
        assert name == "result"
        assert orjson.loads(data)["host"] == "h1"
        # This page does not read while 100 results arrive: its queue holds 5, then it is
        # told to reload instead of the console holding everything for it.
        burst = [make_result(rid, f"h{i}") for i in range(2, 102)]
        await produce_results(topics.bootstrap, topics["results"], burst)
        registry = console.metrics.registry
        await until(
            lambda: bool(registry.get_sample_value("fleetrun_web_live_overflows_total")), 30
        )
        async with asyncio.timeout(30):
            names = [(await _next_event(lines))[0]]
            while names[-1] != "reload":
                names.append((await _next_event(lines))[0])
        assert len(names) < 1 + len(burst)  # what it could not take was dropped, not held
        await until(lambda: console.hub.subscribers == 0, 30)  # and the stream was ended


async def test_live_output_chunks_reach_the_page_escaped(
    stack_env: StackEnv, topics: Topics, pg_dsn: str
) -> None:
    settings = web_settings(stack_env, topics.prefix, pg_dsn)
    rid = str(uuid.uuid4())
    data, encoding = encode_output(b"\x1b]0;owned\x07hello\n")
    chunk = Output(
        request_id=rid,
        host="h1",
        attempt=1,
        stream="stdout",
        sequence=0,
        offset=0,
        data=data,
        encoding=encoding,
        eos=True,
        at="2026-12-06T00:00:00Z",
    )
    async with (
        running_console(settings) as console,
        httpx2.AsyncClient(base_url=console.url, timeout=30) as web,
        web.stream("GET", f"/requests/{rid}/events") as stream,
    ):
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith(": following")
        await until(lambda: console.hub.subscribers == 1, 30)

        async def keep_producing() -> None:
            # The feed starts at the end of each of the topic's 12 partitions once it has
            # them: a chunk produced before that is (rightly) not shown, so repeat it.
            for _ in range(60):
                await produce(topics.bootstrap, topics["output"], [(rid.encode(), encode(chunk))])
                await asyncio.sleep(0.5)

        producing = asyncio.create_task(keep_producing())
        try:
            async with asyncio.timeout(30):
                name, event = await _next_event(lines)
        finally:
            producing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producing
    assert name == "output"
    shown = orjson.loads(event)
    assert shown["host"] == "h1"
    assert shown["text"] == "\\x1b]0;owned\\x07hello\n"  # escaped, the newline kept
    assert shown["eos"]


async def test_a_database_that_does_not_answer_gives_a_503_page_and_health_says_why(
    stack_env: StackEnv, topics: Topics
) -> None:
    closed = f"postgresql://fleetrun:fleetrun@127.0.0.1:{free_port()}/fleetrun"
    settings = web_settings(stack_env, topics.prefix, closed, pg_timeout_s=2)
    async with (
        running_console(settings) as console,
        httpx2.AsyncClient(base_url=console.url, timeout=30) as web,
    ):
        page = await web.get("/")
        assert page.status_code == 503
        assert "PostgreSQL did not answer" in page.text
        await until(lambda: console.outages.is_down("database"), 30)
        health = await web.get("/healthz")
        assert health.status_code == 503
        assert health.json()["dependencies"]["database"]["up"] is False
