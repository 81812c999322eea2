"""The web console for integration tests: in-process on a free port, and Chromium to drive it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from playwright.async_api import Browser, async_playwright

from fleetrun.cli.web.service import WebConsole
from fleetrun.cli.web.settings import WebSettings
from fleetrun.runtime.outage import Outages
from stack.env import StackEnv
from stack.proc import apt_install


def web_settings(env: StackEnv, prefix: str, dsn: str, **overrides: Any) -> WebSettings:
    """Console settings on the test's topics and database, any free port."""
    fields: dict[str, Any] = {
        "kafka_bootstrap": env.kafka_bootstrap,
        **env.kafka_admin,
        "topic_prefix": prefix,
        "pg_dsn": dsn,
        "port": 0,
        "principal": "web-test",
    }
    return WebSettings(**(fields | overrides))


@contextlib.asynccontextmanager
async def running_console(settings: WebSettings) -> AsyncIterator[WebConsole]:
    """A console serving until the block exits, its live feed subscribed before it yields."""
    console = WebConsole(settings, outages=Outages())  # not the test process's tracker
    await console.start()
    try:
        async with asyncio.timeout(30):
            await console.feed.started.wait()
        yield console
    finally:
        await console.stop()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium (installed when missing, as the stack installs its packages), headless,
    driven by Playwright; Playwright's own browser download is never used."""
    apt_install(["chromium"])
    path = shutil.which("chromium")
    assert path is not None, "the chromium package installs /usr/bin/chromium"
    # Chromium refuses its sandbox to root (CI runs as root); containers often have a small
    # /dev/shm, which crashes its renderers.
    args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, headless=True, args=args)
        try:
            yield browser
        finally:
            await browser.close()


async def wait_for_state(dsn: str, request_id: str, states: set[str], timeout_s: float) -> None:
    """Poll PostgreSQL until the sink has stored the request in one of `states`."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                state = await conn.fetchval(
                    "SELECT state FROM request_summary WHERE request_id = $1",
                    uuid.UUID(request_id),
                    timeout=10,
                )
                if state in states:
                    return
                await asyncio.sleep(0.1)
    finally:
        await conn.close(timeout=10)


async def until(check: Callable[[], bool], timeout_s: float) -> None:
    """Wait until `check()` is true; TimeoutError at the deadline."""
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)
