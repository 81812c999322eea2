"""The console's token: every page needs it once set; /healthz and /metrics stay open."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from fleetrun.cli.web.auth import COOKIE, TokenAuth


async def _hello(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def _client(token: str | None) -> TestClient:
    app = Starlette(routes=[Route("/", _hello), Route("/healthz", _hello)])
    app.add_middleware(TokenAuth, token=token)
    return TestClient(app)


def test_without_a_token_setting_every_page_is_open() -> None:
    assert _client(None).get("/").text == "hello"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"Cookie": f"{COOKIE}=x"},
    ],
)
def test_pages_refuse_a_missing_or_wrong_token(headers: dict[str, str]) -> None:
    reply = _client("s3cret").get("/", headers=headers)
    assert reply.status_code == 401
    assert "token" in reply.text


def test_a_bearer_token_opens_a_page() -> None:
    reply = _client("s3cret").get("/", headers={"Authorization": "Bearer s3cret"})
    assert reply.text == "hello"


def test_the_token_in_a_link_becomes_a_strict_cookie_and_leaves_the_url() -> None:
    client = _client("s3cret")
    reply = client.get("/?token=s3cret&state=completed", follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/?state=completed"
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert client.get("/").text == "hello"  # the cookie now opens pages


def test_health_stays_open_for_probes() -> None:
    assert _client("s3cret").get("/healthz").status_code == 200
