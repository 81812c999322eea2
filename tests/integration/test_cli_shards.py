"""A sharded request as people see it: `fleetrun run --wait`, `status`, `results` and the sink
show one request, whatever the three collectors did with its shards."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from fleetrun.cli.errors import EXIT_OK
from fleetrun.cli.settings import CliSettings
from sink.app import run_migrations, run_sink
from stack.env import StackEnv
from stack.simfleet.runner import running_fleet
from tests.support.cli import run_fleetrun
from tests.support.kafka import Topics
from tests.support.settings import process_env
from tests.support.shards import collector_group
from tests.support.sink import fetch, sink_settings_for


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run_fleetrun(env, *args, timeout_s=120)


async def test_run_wait_status_and_the_sink_see_one_request(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, tmp_path: Path
) -> None:
    hosts = 150
    sink_settings = sink_settings_for(stack_env, topics.prefix, pg_dsn)
    await run_migrations(sink_settings)
    stop = asyncio.Event()
    sink_task = asyncio.create_task(run_sink(sink_settings, stop))
    rid = str(uuid.uuid4())
    try:
        async with running_fleet(hosts, tmp_path / "fleet", base_address="127.65.0.1") as fleet:
            env = process_env(
                CliSettings,
                stack_env,
                {"topic_prefix": topics.prefix, "pg_dsn": pg_dsn, "inventory": fleet.inventory},
            )
            async with collector_group(topics.prefix, tmp_path, fleet, 3, shard_size=20):
                code, out, err = await _cli(
                    env, "run", "echo same", "-t", "@all", "--wait", "--request-id", rid
                )
            assert code == EXIT_OK, err
            assert f"{hosts} hosts: {hosts} ok" in out
            async with asyncio.timeout(60):
                while True:
                    code, out, _ = await _cli(env, "status", rid)
                    if code == EXIT_OK and "state     completed" in out:
                        break
                    await asyncio.sleep(0.2)
            assert f"{hosts}/{hosts} reported: {hosts} ok" in out
            rows = await fetch(
                pg_dsn,
                "SELECT count(*) AS n, count(DISTINCT host) AS hosts, "
                "count(DISTINCT collector) AS collectors FROM results WHERE request_id = $1",
                uuid.UUID(rid),
            )
            assert (rows[0]["n"], rows[0]["hosts"], rows[0]["collectors"]) == (hosts, hosts, 3)
            requests = await fetch(pg_dsn, "SELECT count(*) AS n FROM requests")
            assert requests[0]["n"] == 1
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await sink_task
