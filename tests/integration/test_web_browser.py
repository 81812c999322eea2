"""`fleetrun web` in a real browser (Debian's Chromium, headless) against the real stack: a
collector running commands on the sshd demo hosts, a sink storing them in PostgreSQL.

With FLEETRUN_WEB_SCREENSHOTS=DIR set, the pages are also saved as DIR/{requests,request,host}.png
(the README's screenshots: docs/screenshots).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from fleetrun.cli.web.service import WebConsole
from schemas import Request
from stack.env import StackEnv
from tests.support.collector import collector_settings, running_collector, submit
from tests.support.kafka import Topics
from tests.support.sink import MakeSink
from tests.support.web import chromium, running_console, wait_for_state, web_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORED_S = 60.0
SHOTS = os.environ.get("FLEETRUN_WEB_SCREENSHOTS")


@dataclass
class Fleet:
    """The real pipeline for one test, and a console over it."""

    topics: Topics
    dsn: str
    console: WebConsole

    async def run(self, command: str, **fields: object) -> str:
        """Submit `command` for the demo hosts; its request id."""
        request = Request.new(principal="alice@test", command=command, targets=["@demo"], **fields)
        await submit(self.topics.bootstrap, self.topics.prefix + "requests", [request])
        return request.request_id


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    yield page
    await context.close()


@pytest.fixture
async def fleet(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink
) -> AsyncIterator[Fleet]:
    await sinks().start()  # migrates the test's database on start
    async with (
        running_collector(collector_settings(topics.prefix)),
        running_console(web_settings(stack_env, topics.prefix, pg_dsn)) as console,
    ):
        yield Fleet(topics, pg_dsn, console)


async def _shot(page: Page, name: str) -> None:
    if SHOTS:  # Playwright creates the directory
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


async def test_the_list_shows_a_new_request_and_its_output_escaped(
    fleet: Fleet, page: Page
) -> None:
    # A terminal colour, markup and a script in the output: shown as text, never run.
    command = (
        r"printf 'a\033[31mred\033[0m <b>bold</b><script>window.pwned=1</script>\n'; "
        "echo from $(hostname) >&2"
    )
    rid = await fleet.run(command, labels={"team": "ops"})
    await wait_for_state(fleet.dsn, rid, {"completed"}, STORED_S)

    await page.goto(fleet.console.url + "/")
    row = page.locator(f'tr[data-request-id="{rid}"]')
    await expect(row).to_be_visible()
    await expect(row.locator("td").nth(1)).to_have_text("completed")
    await expect(row.locator("td").nth(4)).to_have_text("3/3")
    await expect(page.locator("#counts")).to_contain_text("3 ok")
    await _shot(page, "requests")

    await row.locator("a").first.click()
    await expect(page).to_have_url(f"{fleet.console.url}/requests/{rid}")
    stdout = page.locator("section.group pre.stdout").first
    await expect(stdout).to_have_text(
        r"a\x1b[31mred\x1b[0m <b>bold</b><script>window.pwned=1</script>"
    )
    await expect(stdout.locator("span.ctl")).to_have_count(2)  # the two ESC, marked
    assert await page.locator("section.group pre.stdout b, section.group script").count() == 0
    assert await page.evaluate("typeof window.pwned") == "undefined"
    await expect(page.locator("section.group h3").first).to_contain_text("demo[1-3] (3 hosts) ok")
    counts = await page.locator("#histogram tr td:last-child").all_inner_texts()
    assert sum(int(c.split()[0]) for c in counts) == 3  # every host in some bucket
    await _shot(page, "request")

    await page.locator("section.group details summary").first.click()
    await page.locator("section.group details a", has_text="demo2").click()
    await expect(page.locator("h1")).to_have_text("Host demo2")
    await expect(page.locator("pre.stderr").first).to_contain_text("from ")
    await _shot(page, "host")


async def test_the_request_page_updates_live_while_a_command_runs(fleet: Fleet, page: Page) -> None:
    rid = await fleet.run("sleep 5; echo slept", timeout_s=60)
    await wait_for_state(fleet.dsn, rid, {"accepted"}, STORED_S)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    await page.goto(f"{fleet.console.url}/requests/{rid}")
    await expect(page.locator("#state")).to_have_text("accepted")
    await expect(page.locator("#reported")).to_have_text("0")
    await expect(page.locator("#total")).to_have_text("3")
    await expect(page.locator("#cancel")).to_be_enabled()
    await _shot(page, "request-running")

    # Nothing reloads the page: the results and the completed status arrive as events.
    await expect(page.locator("#live-results li")).to_have_count(3, timeout=30_000)
    await expect(page.locator("#reported")).to_have_text("3")
    await expect(page.locator("#state")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("#by-status")).to_contain_text("3 ok")
    await expect(page.locator("#cancel")).to_be_disabled()
    assert navigations == [f"{fleet.console.url}/requests/{rid}"]


async def test_an_unknown_request_id_gives_a_clear_404_page(
    stack_env: StackEnv, topics: Topics, pg_dsn: str, sinks: MakeSink, page: Page
) -> None:
    await sinks().start()
    async with running_console(web_settings(stack_env, topics.prefix, pg_dsn)) as console:
        unknown = "00000000-0000-4000-8000-000000000000"
        reply = await page.goto(f"{console.url}/requests/{unknown}")
        assert reply is not None
        assert reply.status == 404
        await expect(page.locator("#not-found")).to_have_text(f"No request {unknown} here")
        await expect(page.locator("main")).to_contain_text("PostgreSQL has no trace of it")

        reply = await page.goto(f"{console.url}/requests/not-a-uuid")
        assert reply is not None
        assert reply.status == 404
        await expect(page.locator("main")).to_contain_text("A request id is a UUID")


async def test_the_cancel_button_cancels_from_the_page(fleet: Fleet, page: Page) -> None:
    rid = await fleet.run("sleep 60", timeout_s=120)
    await wait_for_state(fleet.dsn, rid, {"accepted"}, STORED_S)
    await page.goto(f"{fleet.console.url}/requests/{rid}")
    await page.locator("input[name=reason]").fill("wrong hosts")
    await page.locator("#cancel").click()
    await expect(page.locator("#note")).to_contain_text("cancel sent by web-test")
    # The page follows the request live again: the killed hosts and the completed status.
    await expect(page.locator("#state")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("#by-status")).not_to_contain_text("ok")
