"""The routes: ingest (the CloudEvents HTTP binding), health, the dashboard, and the table of
every route (the query side is :mod:`evflow.serve.reading`).

Each handler parses the request, makes one call to the facade on a worker thread
(:class:`~evflow.serve.flows.Flows`) and shapes the answer as the CLI's ``--format json`` does.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from evflow.app import Evflow, Outcome
from evflow.core.records import EventFilter
from evflow.core.reports import delivery_json, rule_json, schedule_json
from evflow.serve import binding, dashboard
from evflow.serve.answers import BodyTooLarge, Context, Handler, endpoint, json_answer, problem
from evflow.serve.http import COOKIE
from evflow.serve.reading import (
    get_deliveries,
    get_event,
    get_events,
    get_projection,
    get_projection_row,
    get_projections,
    get_stats,
    projection_list,
)

DASHBOARD_EVENTS = 50
DASHBOARD_TIMERS = 50


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body ({declared} bytes) is larger than the limit ({limit} bytes)")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than the limit ({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """``emit --format json``: the recorded event, whether it was a duplicate, what it
    triggered."""
    return {**outcome.event, "duplicate": outcome.duplicate, "triggered": outcome.triggered_json()}


async def post_events(request: Request, ctx: Context) -> Response:
    body = await _read_body(request, ctx.max_body)
    mode, events = binding.decode(dict(request.headers.items()), body)
    if mode == "batch":
        outcomes = await ctx.writer.emit_batch(events)
        created = any(not o.duplicate for o in outcomes)
        return json_answer([outcome_json(o) for o in outcomes], 201 if created else 200)
    outcome = await ctx.writer.emit(events[0])
    answer = outcome_json(outcome)
    if outcome.duplicate:
        return json_answer(answer, 200)
    # by seq: an id is unique only with its source, may be all digits (a seq to GET /events/{id})
    # and may hold characters that a URL cannot carry as they are
    location = str(request.url_for("event", id=str(outcome.event["seq"])))
    return json_answer(answer, 201, {"Location": location})


# -- health ------------------------------------------------------------------------------------


async def healthz(request: Request, ctx: Context) -> Response:
    return json_answer({"status": "ok", "version": ctx.version})


async def readyz(request: Request, ctx: Context) -> Response:
    if ctx.stopping.is_set():
        return problem(503, "Service Unavailable", "shutting down")

    def check(flow: Evflow) -> dict[str, Any]:
        last = flow.last_seq()
        rules = flow.ruleset
        return {"status": "ready", "last_seq": last, "rules": len(rules.rules)}

    return json_answer(await ctx.flows.run(check))


# -- the dashboard -----------------------------------------------------------------------------


def _dashboard_page(flow: Evflow, version: str) -> dict[str, Any]:
    from evflow.core.events import now_utc

    now = now_utc()
    last = flow.last_seq()
    events = list(flow.events(EventFilter(since_seq=max(0, last - DASHBOARD_EVENTS))))
    events.reverse()
    ruleset = flow.ruleset
    ticks = flow.schedule_ticks() if ruleset.schedules else {}
    stats = flow.stats()
    deliveries = []
    for status in ("dead", "failed", "running", "pending"):
        deliveries += [delivery_json(d) for d in flow.deliveries(status=status)[:25]]
    timers = [t.to_json() for t in flow.timers(status="pending", limit=DASHBOARD_TIMERS)]
    return {
        "events": events[:DASHBOARD_EVENTS],
        "last_seq": last,
        "rules": [rule_json(r, now) for r in ruleset.rules],
        "schedules": [schedule_json(s, now, ticks.get(s.name)) for s in ruleset.schedules],
        "deliveries": deliveries,
        "delivery_counts": stats.deliveries,
        "projections": projection_list(flow),
        "timers": timers,
        "database": flow.display_url,
        "version": version,
    }


async def get_dashboard(request: Request, ctx: Context) -> Response:
    page = await ctx.flows.run(lambda flow: _dashboard_page(flow, ctx.version))
    html = dashboard.render(page, event_limit=DASHBOARD_EVENTS)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


async def login(request: Request, ctx: Context) -> Response:
    """The dashboard's sign-in form: a token with the read scope, kept in an HttpOnly cookie
    (a browser cannot send a bearer header when following a link)."""
    from urllib.parse import parse_qs, quote

    body = await _read_body(request, 4096)
    token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
    scopes = ctx.tokens.scopes(token) if token else None
    if not scopes or "read" not in scopes:
        return HTMLResponse("<p>Unknown token, or no read scope. <a href='.'>Back</a></p>", 401)
    response = RedirectResponse(".", 303)
    response.set_cookie(
        COOKIE, quote(token), httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


def create_app(ctx: Context) -> Starlette:
    def route(path: str, handler: Handler, methods: list[str], name: str | None = None) -> Route:
        return Route(path, endpoint(handler, ctx), methods=methods, name=name)

    routes = [
        route("/", get_dashboard, ["GET"]),
        route("/login", login, ["POST"]),
        route("/events", post_events, ["POST"]),
        route("/events", get_events, ["GET"]),
        route("/events/{id:path}", get_event, ["GET"], name="event"),
        route("/projections", get_projections, ["GET"]),
        route("/projections/{name}", get_projection, ["GET"]),
        route("/projections/{name}/{key:path}", get_projection_row, ["GET"]),
        route("/deliveries", get_deliveries, ["GET"]),
        route("/stats", get_stats, ["GET"]),
        route("/healthz", healthz, ["GET"]),
        route("/readyz", readyz, ["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return problem(405, "Method Not Allowed", f"{request.method} {request.url.path}")
        return problem(404, "Not Found", f"no such endpoint: {request.url.path}")

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
