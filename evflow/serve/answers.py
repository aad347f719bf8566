"""What every route shares: the context, JSON answers, RFC 9457 problems (the one place an
exception becomes an answer), and the parsing of paging parameters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from evflow.core.text import redact_text
from evflow.errors import (
    BadFilter,
    EvflowError,
    InvalidBatchItem,
    InvalidEvent,
    InvalidRules,
    NotFound,
    UsageError,
)
from evflow.serve import binding
from evflow.serve.auth import Tokens
from evflow.serve.flows import Flows, is_storage_error
from evflow.serve.http import PROBLEM, JsonLines, problem_body
from evflow.serve.writer import Writer

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


class BodyTooLarge(Exception):
    """The request body is larger than the limit."""


@dataclass
class Context:
    flows: Flows
    writer: Writer
    tokens: Tokens
    max_body: int
    log: JsonLines
    version: str
    stopping: asyncio.Event


def json_answer(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status, headers, media_type="application/json")


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = json.dumps(problem_body(status, title, detail, **extra), ensure_ascii=False)
    return Response(body, status, media_type=PROBLEM)


def problem_for(exc: BaseException, log: JsonLines) -> Response:
    """The one place an exception becomes an HTTP answer."""
    if isinstance(exc, BodyTooLarge):
        return problem(413, "Payload Too Large", str(exc))
    if isinstance(exc, binding.UnsupportedMedia):
        return problem(415, "Unsupported Media Type", exc.message)
    if isinstance(exc, InvalidEvent):
        extra: dict[str, Any] = {"attribute": exc.field}
        index = getattr(exc, "index", None)
        if isinstance(exc, InvalidBatchItem) or index is not None:
            extra["index"] = index
        return problem(400, "Invalid event", f"{exc.field}: {exc.problem}", **extra)
    if is_storage_error(exc):
        detail = exc.message if isinstance(exc, EvflowError) else str(exc).strip()
        log.write({"level": "error", "message": f"storage unavailable: {redact_text(detail)}"})
        return problem(503, "Service Unavailable", f"storage unavailable: {redact_text(detail)}")
    if isinstance(exc, InvalidRules):
        return problem(503, "Service Unavailable", f"the rules do not load: {exc.message}")
    if isinstance(exc, NotFound):
        return problem(404, "Not Found", exc.message)
    if isinstance(exc, BadFilter):  # the CLI's message names its option, --where
        return problem(400, "Bad Request", f"where: {exc.problem}")
    if isinstance(exc, UsageError):
        return problem(400, "Bad Request", exc.message)
    if isinstance(exc, EvflowError):
        return problem(422, "Unprocessable Content", exc.message)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else None
    message = f"{type(exc).__name__}: {redact_text(str(exc))}"
    log.write({"level": "error", "message": message, "where": where})
    return problem(500, "Internal Server Error", "unexpected error (see the server log)")


Handler = Callable[[Request, Context], Awaitable[Response]]


def endpoint(handler: Handler, ctx: Context) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, ctx)
        except Exception as exc:  # noqa: BLE001 - every error is an answer, never a traceback
            return problem_for(exc, ctx.log)

    return endpoint


def _number(text: str) -> int | None:
    """Digits as a number that a database column can hold, else None."""
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def limit_param(request: Request, default: int | None) -> int | None:
    text = request.query_params.get("limit")
    if text is None:
        return default
    number = _number(text)
    if number is None or number < 1:
        raise UsageError(f"limit: expected a positive number (got {text!r})")
    return min(number, MAX_LIMIT)


def next_link(request: Request, **changes: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    params += list(changes.items())
    return f'<{request.url.path}?{urlencode(params)}>; rel="next"'
