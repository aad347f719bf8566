"""The query side: the log (JSON pages, ndjson streams, server-sent events), one event,
deliveries, stats and projections, in the CLI's JSON shapes (:mod:`evflow.core.reports`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import heapq
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from evflow.app import Evflow
from evflow.core.events import Event
from evflow.core.positions import parse_position
from evflow.core.records import DELIVERY_STATUSES, EventFilter
from evflow.core.reports import delivery_json, show_json, stats_json
from evflow.core.text import redact_text
from evflow.errors import NotFound, UsageError
from evflow.serve.answers import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Context,
    json_answer,
    limit_param,
    next_link,
)

STREAM_PAGE = 1000
SSE_POLL_SECONDS = 0.5
SSE_MAX_SECONDS = 600.0  # then the browser reconnects (Last-Event-ID): no connection lives forever


def _event_filter(request: Request) -> EventFilter:
    q = request.query_params
    since_seq, since_time = parse_position(q.get("since"), "since")
    until_seq, until_time = parse_position(q.get("until"), "until")
    cursor = q.get("cursor")
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise UsageError("cursor: not a cursor this server gave")
        since_seq = max(since_seq or 0, int(cursor))
    return EventFilter(
        since_seq=since_seq or 0,
        until_seq=until_seq,
        since_time=since_time,
        until_time=until_time,
        types=tuple(q.getlist("type")),
        subject=q.get("subject"),
    )


def _page(flow: Evflow, flt: EventFilter, limit: int | None) -> list[Event]:
    return list(flow.events(replace(flt, limit=limit)))


async def get_events(request: Request, ctx: Context) -> Response:
    accept = request.headers.get("accept", "")
    flt = _event_filter(request)
    if "text/event-stream" in accept:
        return _sse(request, ctx, flt)
    if "application/x-ndjson" in accept:
        return _ndjson(ctx, flt, limit_param(request, None))
    limit = limit_param(request, DEFAULT_LIMIT)
    events = await ctx.flows.run(lambda flow: _page(flow, flt, limit))
    headers = {}
    if limit is not None and len(events) == limit:
        headers["Link"] = next_link(request, cursor=str(events[-1]["seq"]))
    return json_answer(events, headers=headers)


def _ndjson(ctx: Context, flt: EventFilter, limit: int | None) -> Response:
    """Every event, one per line, read a page at a time: flat memory on any log."""

    async def lines() -> AsyncIterator[bytes]:
        position, left = flt.since_seq, limit
        while left is None or left > 0:
            size = STREAM_PAGE if left is None else min(STREAM_PAGE, left)
            page_flt = replace(flt, since_seq=position)
            page = await ctx.flows.run(functools.partial(_page, flt=page_flt, limit=size))
            if not page:
                return
            yield b"".join(
                json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                for e in page
            )
            position = page[-1]["seq"]
            if left is not None:
                left -= len(page)
            if len(page) < size:
                return

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _sse(request: Request, ctx: Context, flt: EventFilter) -> Response:
    """Server-sent events: each new event as it is recorded (``id:`` is its seq)."""
    resume = request.headers.get("last-event-id")
    given = "since" in request.query_params or "cursor" in request.query_params

    async def stream() -> AsyncIterator[bytes]:
        if resume is not None and resume.isdigit() and len(resume) <= 18:
            position = int(resume)
        elif given:
            position = flt.since_seq
        else:
            position = await ctx.flows.run(lambda flow: flow.last_seq())
        yield b"retry: 2000\n\n"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SSE_MAX_SECONDS
        quiet = 0.0
        while not ctx.stopping.is_set() and loop.time() < deadline:
            page_flt = replace(flt, since_seq=position)
            page = await ctx.flows.run(functools.partial(_page, flt=page_flt, limit=500))
            for e in page:
                data = json.dumps(e, ensure_ascii=False, separators=(",", ":"))
                yield f"id: {e['seq']}\ndata: {data}\n\n".encode()
                position = e["seq"]
            if page:
                quiet = 0.0
                continue
            quiet += SSE_POLL_SECONDS
            if quiet >= 15:
                quiet = 0.0
                yield b": keep-alive\n\n"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stopping.wait(), SSE_POLL_SECONDS)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def get_event(request: Request, ctx: Context) -> Response:
    ref = request.path_params["id"]

    def show(flow: Evflow) -> dict[str, Any]:
        event = flow.get(ref)
        if event is None:
            raise NotFound(f"no event with id or seq {ref!r}")
        return show_json(
            event,
            flow.caused_tree(event),
            flow.deliveries(event_seq=event["seq"]),
            flow.rule_errors(event["seq"]),
            list(flow.timers(cause_seq=event["seq"])),
            list(flow.timers(cancelled_by=event["seq"])),
        )

    return json_answer(await ctx.flows.run(show))


async def get_deliveries(request: Request, ctx: Context) -> Response:
    status = request.query_params.get("status")
    rule = request.query_params.get("rule")
    if status is not None and status not in DELIVERY_STATUSES:
        raise UsageError(f"status: expected one of {', '.join(DELIVERY_STATUSES)} (got {status!r})")
    rows = await ctx.flows.run(lambda flow: flow.deliveries(status=status, rule=rule))
    return json_answer([delivery_json(d) for d in rows])


async def get_stats(request: Request, ctx: Context) -> Response:
    value = await ctx.flows.run(
        lambda flow: stats_json(flow.display_url, flow.stats(), flow.positions())
    )
    return json_answer(value)


# -- projections -------------------------------------------------------------------------------


def projection_list(flow: Evflow) -> list[dict[str, Any]]:
    positions = flow.positions()
    last = flow.last_seq()
    out = []
    for p in flow.ruleset.projections:
        at = positions.get(p.name, {}).get("position", 0)
        out.append({"name": p.name, "description": p.description, "position": at, "lag": last - at})
    return out


async def get_projections(request: Request, ctx: Context) -> Response:
    return json_answer(await ctx.flows.run(projection_list))


def _cursor_key(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        raise UsageError("cursor: not a cursor this server gave") from None
    if not isinstance(value, str):
        raise UsageError("cursor: not a cursor this server gave")
    return value


def _make_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


async def get_projection(request: Request, ctx: Context) -> Response:
    name = request.path_params["name"]
    q = request.query_params
    where = q.get("where")
    seq, time = parse_position(q.get("as_of"), "as_of")
    after = _cursor_key(q.get("cursor"))
    limit = limit_param(request, None)
    warnings: list[str] = []

    def read(flow: Evflow) -> list[Any]:
        flow.check_projection(name)
        if seq is not None or time is not None:
            rows: Any = flow.as_of(name, seq=seq, time=time, where=where)
        else:
            stale = flow.catch_up([name])
            if stale.error is not None:
                warnings.append(stale.error.message)
            rows = flow.query(name, where=where)
        if after is None and limit is None:
            return [r.to_json() for r in rows]
        # pages in key order (Python's, whatever the database's collation): the next page holds
        # the smallest keys after the cursor
        kept = (r for r in rows if after is None or r.key > after)
        page = heapq.nsmallest((limit or MAX_LIMIT) + 1, kept, key=lambda r: r.key)
        return [r.to_json() for r in page]

    rows = await ctx.flows.run(read)
    headers: dict[str, str] = {}
    if warnings:
        headers["Evflow-Warning"] = redact_text(" ".join(warnings[0].split()))[:500]
    size = limit or MAX_LIMIT
    if (after is not None or limit is not None) and len(rows) > size:
        rows = rows[:size]
        headers["Link"] = next_link(request, cursor=_make_cursor(rows[-1]["key"]))
    return json_answer(rows, headers=headers)


async def get_projection_row(request: Request, ctx: Context) -> Response:
    name, key = request.path_params["name"], request.path_params["key"]

    def read(flow: Evflow) -> dict[str, Any]:
        flow.check_projection(name)
        flow.catch_up([name])
        for row in flow.query(name, key):
            return row.to_json()
        raise NotFound(f"projection {name} has no row with key {key!r}")

    return json_answer(await ctx.flows.run(read))
