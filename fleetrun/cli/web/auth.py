"""The console's one access rule: with a token set, every page needs it (ASGI middleware).

A viewer presents it as `Authorization: Bearer TOKEN`, or opens any page once with
`?token=TOKEN`, which sets an HttpOnly, SameSite=Strict cookie (so another site cannot make the
browser press the cancel button) and redirects to the same page without the token in its URL.
/healthz, /metrics and /static stay open, like the other services' ops endpoints.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "fleetrun_web_token"
OPEN_PATHS = ("/healthz", "/metrics", "/static/")


class TokenAuth:
    """Refuses requests without the token (401) when `token` is set; passes all otherwise."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or _open(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given = dict(query).get("token")
        if given is not None and self._valid(given):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), 303)
            response.set_cookie(COOKIE, given, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        bearer = headers.get("authorization", "")
        cookie = _cookie(headers.get("cookie", ""))
        if self._valid(bearer.removeprefix("Bearer ").strip()) or self._valid(cookie):
            await self.app(scope, receive, send)
            return
        refused = PlainTextResponse(
            "fleetrun web: this console needs its token: open it once as ?token=..., or send "
            "Authorization: Bearer ...\n",
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await refused(scope, receive, send)

    def _valid(self, given: str | None) -> bool:
        if not given or self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())


def _open(path: str) -> bool:
    return path in OPEN_PATHS[:2] or path.startswith(OPEN_PATHS[2])


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None
