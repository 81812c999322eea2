"""Huge output: 200 MB through a real sshd is capped, counted and hashed exactly, in flat memory."""

from __future__ import annotations

import asyncio
import contextlib
import re

import psutil

from collector.capture import MARKER_TEMPLATE
from stack.env import StackEnv
from tests.support.sshexec import MakeExecutor, request, stack_host, stack_settings

SIZE = 200_000_000
MAX_RSS_GROWTH = 64 * 1024 * 1024


async def test_200_mb_of_output_is_capped_with_exact_size_and_digest(
    stack_env: StackEnv, make_executor: MakeExecutor
) -> None:
    # The host hashes what it prints and reports the digest on stderr (fd 3 is the real stdout).
    cmd = f"{{ head -c {SIZE} /dev/urandom | tee /dev/fd/3 | sha256sum >&2; }} 3>&1"
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await done.wait()

    e = make_executor(stack_settings(stack_env))
    sampler = asyncio.create_task(sample())
    try:
        req = request(cmd, max_output_bytes=65_536, timeout_s=120)
        r = await e.run(stack_host(stack_env), req, collector="c")
    finally:
        done.set()
        await sampler
    assert r.status == "ok", r.error
    assert r.stdout_bytes == SIZE
    assert r.stdout_truncated
    assert len(r.stdout_data) <= 65_536
    host_digest = r.stderr_data.split()[0].decode()
    assert re.fullmatch("[0-9a-f]{64}", host_digest)
    assert r.stdout_sha256 == host_digest
    assert MARKER_TEMPLATE.split(b"%d")[0] in r.stdout_data
    assert not r.stderr_truncated
    growth = peak - before
    assert growth < MAX_RSS_GROWTH, f"RSS grew by {growth / 2**20:.1f} MiB"
