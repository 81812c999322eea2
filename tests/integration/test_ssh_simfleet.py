"""SshExecutor against the simulated fleet: every scripted behaviour maps to its status, fast."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from collector.inventory import Inventory
from collector.metrics import CollectorMetrics
from collector.settings import CollectorSettings
from collector.ssh import SshExecutor
from schemas import Request, Target
from stack.simfleet import running_fleet

PROFILE = "ok=2,fail=1,hang=1,disconnect=1,slow_handshake=1,auth_fail=1,wrong_key=1,dead=1"
EXPECTED = {
    "ok": "ok",
    "fail": "failed",
    "hang": "timeout",
    "disconnect": "error",
    "slow_handshake": "unreachable",
    "auth_fail": "auth_failed",
    "wrong_key": "host_key_mismatch",
    "dead": "unreachable",
}


async def test_every_behaviour_gets_its_status(tmp_path: Path) -> None:
    async with running_fleet(
        9, tmp_path / "fleet", profile=PROFILE, base_address="127.113.0.1", port=0
    ) as fleet:
        settings = CollectorSettings(ssh_kill_grace_s=0.5, inventory=fleet.dir / "inventory.toml")
        inventory = Inventory.load(None, settings)  # the fleet's own inventory.toml
        ex = SshExecutor(settings, CollectorMetrics(), inventory)
        req = Request.new(
            principal="tests",
            command="uname -n",
            targets=["@all"],
            timeout_s=1.0,
            connect_timeout_s=1.0,
        )
        t0 = time.monotonic()
        try:
            results = await asyncio.gather(
                *(
                    ex.run(inventory.resolve(Target(h.name)), req, collector="c")
                    for h in fleet.hosts
                )
            )
        finally:
            await ex.close()
        elapsed = time.monotonic() - t0
        stats = await fleet.wait_stats(lambda s: s["counters"].get("killed", 0) >= 1)
    got = {h.behaviour: r.status for h, r in zip(fleet.hosts, results, strict=True)}
    assert got == EXPECTED
    for h, r in zip(fleet.hosts, results, strict=True):
        assert r.host == h.name
        if r.status == "ok":
            assert r.stdout_data == f"{h.name}\n".encode()
    # One request over nine hosts, dead and hanging ones included: bounded by the deadlines
    # (1 s connect, 1 s command + 0.5 s kill grace), not by the slowest host's whims.
    assert elapsed < 1.0 + 1.0 + 0.5 + 2.0
    assert stats["counters"]["killed"] >= 1  # the hanging command was ended, not abandoned
