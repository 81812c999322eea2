"""The console's pages (Starlette + Jinja2): requests, a request, a host; live events; cancel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import asyncpg
import jinja2
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from fleetrun.cli.cancel import CancelReader, Story, build_cancel, finished_message
from fleetrun.cli.errors import CliError
from fleetrun.cli.grouping import group_results, hosts_count
from fleetrun.cli.settings import CliSettings
from fleetrun.cli.web.auth import TokenAuth
from fleetrun.cli.web.live import Hub
from fleetrun.cli.web.metrics import WebMetrics
from fleetrun.cli.web.render import duration_text, histogram, output_text, visible
from fleetrun.cli.web.settings import WebSettings
from fleetrun.cli.web.store import STATES, Filters, Store
from fleetrun.runtime.kafkaauth import kafka_fields
from fleetrun.runtime.ops import HealthCheck
from schemas import RESULT_STATUSES

HERE: Final = Path(__file__).parent
HEARTBEAT_S: Final = 15.0  # a comment line now and then: proxies keep the stream open
FINAL_STATES: Final = ("completed", "rejected")


def _templates() -> Jinja2Templates:
    # Every value is escaped, whatever the template's file name: host output is never HTML.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, enable_async=False
    )
    env.filters["output"] = output_text
    env.filters["visible"] = lambda v: visible("" if v is None else str(v))
    env.filters["duration"] = duration_text
    env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M:%S") if t else ""
    env.filters["quote"] = lambda v: quote(str(v), safe="")
    env.globals["hosts_count"] = hosts_count
    env.globals["statuses"] = RESULT_STATUSES
    return Jinja2Templates(env=env)


class Console:
    """The console's handlers, holding what they share: settings, store, hub, metrics."""

    def __init__(
        self,
        settings: WebSettings,
        store: Store,
        hub: Hub,
        metrics: WebMetrics,
        health: HealthCheck,
        closing: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.health = health
        self.closing = closing
        self.templates = _templates()

    def page(
        self, request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        self.metrics.pages.labels(name.removesuffix(".html"), str(status_code)).inc()
        context = {"title": "fleetrun", **context}
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def not_found(self, request: Request, what: str, hint: str) -> Response:
        return self.page(request, "not_found.html", {"what": what, "hint": hint}, 404)

    async def requests(self, request: Request) -> Response:
        q = request.query_params
        problems: list[str] = []
        filters = Filters(
            principal=q.get("principal") or None,
            label=_label(q.get("label"), problems),
            state=q.get("state") if q.get("state") in STATES else None,
            since=_when(q.get("since"), "since", problems),
            until=_when(q.get("until"), "until", problems),
        )
        rows = await self.store.requests(filters, self.settings.page_size)
        totals = {s: sum(r[s] or 0 for r in rows) for s in RESULT_STATUSES}
        states: dict[str, int] = {}
        for r in rows:
            states[r["state"] or "unknown"] = states.get(r["state"] or "unknown", 0) + 1
        context = {
            "rows": rows,
            "query": dict(q),
            "states": STATES,
            "totals": totals,
            "by_state": states,
            "problems": problems,
        }
        return self.page(request, "requests.html", context)

    async def request(self, request: Request) -> Response:
        rid = _request_id(request.path_params["request_id"])
        found = None if rid is None else await self.store.request(rid)
        if rid is None or found is None:
            shown = request.path_params["request_id"]
            return self.not_found(
                request,
                f"No request {shown} here",
                "PostgreSQL has no trace of it: the sink stores a request once a collector "
                "accepts it (or its first result arrives). Check the id, or look again soon."
                if rid is not None
                else "A request id is a UUID, as printed by `fleetrun run`.",
            )
        summary = found.summary
        state = summary["state"]
        live = state not in FINAL_STATES
        context = {
            "rid": rid,
            "s": summary,
            "groups": group_results(found.results),
            "more": found.more,
            "bars": histogram(r.duration_ms for r in found.results),
            "live": live,
            "can_cancel": live and self.settings.allow_cancel,
            "hosts_json": orjson.dumps(sorted({r.host for r in found.results})).decode(),
            "note": request.query_params.get("note"),
        }
        return self.page(request, "request.html", context)

    async def host(self, request: Request) -> Response:
        name = request.path_params["host"]
        rows = await self.store.host(name, self.settings.host_results)
        if not rows:
            return self.not_found(
                request, f"No results for host {name}", "No stored result names this host."
            )
        return self.page(request, "host.html", {"host": name, "rows": rows})

    async def events(self, request: Request) -> Response:
        rid = _request_id(request.path_params["request_id"])
        if rid is None:
            return PlainTextResponse("not a request id\n", 404)
        return StreamingResponse(
            self._stream(rid),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, rid: str) -> AsyncIterator[bytes]:
        sub = self.hub.subscribe(rid)
        self.metrics.live_pages.inc()
        try:
            yield b": following " + rid.encode() + b"\n\n"
            idle = 0.0
            while not self.closing.is_set():
                try:
                    event = await asyncio.wait_for(sub.queue.get(), timeout=1.0)
                except TimeoutError:
                    idle += 1.0
                    if idle >= HEARTBEAT_S:
                        idle = 0.0
                        yield b": still here\n\n"
                    continue
                idle = 0.0
                yield event.encode()
                if event.kind == "reload":
                    return
        finally:
            self.hub.unsubscribe(sub)
            self.metrics.live_pages.dec()

    async def cancel(self, request: Request) -> Response:
        rid = _request_id(request.path_params["request_id"])
        if rid is None:
            return PlainTextResponse("not a request id\n", 404)
        if not self.settings.allow_cancel:
            self.metrics.cancels.labels("refused").inc()
            return PlainTextResponse("cancelling is turned off on this console\n", 403)
        if not _same_origin(request):
            # Another site's page must not press the button for a viewer's browser (CSRF).
            self.metrics.cancels.labels("refused").inc()
            return PlainTextResponse("a cancel comes from this console's own page\n", 403)
        form = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace")))
        reason = form.get("reason", "").strip() or None
        try:
            note = await self._cancel(rid, reason)
            self.metrics.cancels.labels(
                "sent" if note.startswith("cancel sent") else "not_sent"
            ).inc()
        except CliError as exc:
            self.metrics.cancels.labels("failed").inc()
            note = f"cancel failed: {exc}"
        return RedirectResponse(f"/requests/{rid}?{urlencode({'note': note})}", 303)

    async def _cancel(self, rid: str, reason: str | None) -> str:
        """Produce the cancel the way `fleetrun cancel` does; a line for the page."""
        s = self.settings
        cli = CliSettings(
            **kafka_fields(s),
            topic_prefix=s.topic_prefix,
            kafka_timeout_s=s.kafka_timeout_s,
            principal=s.who,
        )
        record = build_cancel(rid, cli.who, reason)
        story = Story(rid)
        reader = CancelReader(cli, rid)
        await reader.start()
        try:
            await reader.history(story)
            if story.final is not None:
                return f"not cancelled: {finished_message(story.final)}"
            await reader.send(record)
        finally:
            await reader.stop()
        return (
            f"cancel sent by {record.principal}: running commands are stopped, hosts not "
            "started are skipped"
        )

    async def healthz(self, _request: Request) -> Response:
        ok, details = self.health()
        return Response(
            orjson.dumps({"ok": ok, **details}),
            200 if ok else 503,
            media_type="application/json",
        )

    async def metrics_page(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        return self.page(
            request,
            "error.html",
            {"what": "PostgreSQL did not answer", "hint": f"{type(exc).__name__}: {exc}"},
            503,
        )


def build_app(console: Console) -> Starlette:
    """The ASGI application: routes, static files, the token check."""
    routes = [
        Route("/", console.requests),
        Route("/requests/{request_id}", console.request),
        Route("/requests/{request_id}/events", console.events),
        Route("/requests/{request_id}/cancel", console.cancel, methods=["POST"]),
        Route("/hosts/{host}", console.host),
        Route("/healthz", console.healthz),
        Route("/metrics", console.metrics_page),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers: dict[Any, Callable[..., Any]] = {
        asyncpg.PostgresError: console.unavailable,
        OSError: console.unavailable,
        TimeoutError: console.unavailable,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    token = console.settings.token
    app.add_middleware(TokenAuth, token=None if token is None else token.get_secret_value())
    return app


def _same_origin(request: Request) -> bool:
    """True unless the browser says the form was sent from another origin (Origin header)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site form post (browsers send Origin on POST)
    return urlsplit(origin).netloc == request.headers.get("host")


def _request_id(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _label(text: str | None, problems: list[str]) -> tuple[str, str] | None:
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key:
        problems.append(f"label {text!r}: expected key=value")
        return None
    return key, value


def _when(text: str | None, name: str, problems: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        problems.append(
            f"{name} {text!r}: expected a date or time like 2026-12-05 or 2026-12-05T18:00"
        )
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
