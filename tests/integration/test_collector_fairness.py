"""Fair shares on the real stack: small requests of one principal beside a huge one of another.

One collector with a session cap of 20; principal `batch` runs 400 hosts at concurrency 400 (half
a second each), so 380 of its hosts wait for a session at any time. A three-host request of
principal `alice` submitted meanwhile used to queue behind all of them (FIFO: ~380 / 20 × 0.5 s
≈ 9.5 s); with deficit round robin it gets every other free session.
"""

from __future__ import annotations

import time
from pathlib import Path

from schemas import Request
from stack.simfleet.runner import running_fleet
from tests.support.collector import Seen, collector_process, finished, read_until, submit
from tests.support.kafka import Topics
from tests.support.shards import fleet_settings

BIG, SMALL, SMALL_HOSTS = 400, 5, 3
BOUND_S = 4.0  # generous: a small request needs ~0.5 s of commands plus a few sessions' wait


async def test_small_requests_do_not_wait_behind_a_big_one(topics: Topics, tmp_path: Path) -> None:
    hosts = BIG + SMALL * SMALL_HOSTS
    async with running_fleet(hosts, tmp_path / "fleet", base_address="127.66.0.1") as fleet:
        names = [h.name for h in fleet.hosts]
        big = Request.new(
            principal="batch",
            command="sim:sleep 0.5",
            targets=names[:BIG],
            concurrency=BIG,
        )
        smalls = [
            Request.new(
                principal="alice",
                command="sim:sleep 0.5",
                targets=names[BIG + i * SMALL_HOSTS : BIG + (i + 1) * SMALL_HOSTS],
            )
            for i in range(SMALL)
        ]
        settings = fleet_settings(fleet, max_sessions=20, shard_size=0, id="fair")
        async with collector_process(topics.prefix, tmp_path / "c.log", **settings):
            await submit(topics.bootstrap, topics["requests"], [big])
            # The big one holds the cap before the small ones come.
            await read_until(
                topics.bootstrap,
                topics.prefix,
                lambda seen: len(seen.for_request(big.request_id)[0]) >= 40,
                timeout_s=60,
            )
            submitted = time.monotonic()
            await submit(topics.bootstrap, topics["requests"], smalls)
            done_at: dict[str, float] = {}

            def note(seen: Seen) -> bool:
                for s in smalls:
                    if s.request_id not in done_at and seen.completed(s.request_id):
                        done_at[s.request_id] = time.monotonic()
                return len(done_at) == SMALL

            seen = await read_until(topics.bootstrap, topics.prefix, note, timeout_s=60)
            big_done = seen.completed(big.request_id) is not None
            await read_until(
                topics.bootstrap, topics.prefix, finished(big.request_id), timeout_s=90
            )
    latencies = sorted(done_at[s.request_id] - submitted for s in smalls)
    assert latencies[-1] <= BOUND_S, latencies
    assert not big_done, "the big request ended first: nothing was contended"
