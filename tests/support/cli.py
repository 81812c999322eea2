"""`fleetrun` run as a user runs it, in a subprocess, for the end-to-end tests."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

FLEETRUN: Final = str(Path(sys.executable).with_name("fleetrun"))


async def run_fleetrun(
    env: Mapping[str, str], *args: str, timeout_s: float = 60
) -> tuple[int, str, str]:
    """`fleetrun ARGS` with `env`: its exit code, stdout and stderr (within `timeout_s`)."""
    proc = await asyncio.create_subprocess_exec(
        FLEETRUN,
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout_s):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
