"""HTTP plumbing: RFC 9457 problems, the structured access log, bearer-token checks.

The access log and the token check are plain ASGI middleware (no framework needed to read them).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

from evflow.serve.auth import Tokens

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM = "application/problem+json"
#: paths any client may call: a load balancer's probes carry no token
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login"})
COOKIE = "evflow_token"


def problem_body(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}


class JsonLines:
    """One JSON object per line on a stream (stderr), whole lines even from many threads."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        record = {"time": _now(), **record}
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        stream = self._stream or sys.stderr
        with self._lock:
            stream.write(line)
            stream.flush()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AccessLog:
    """Logs every request as one JSON object: method, path (no query string: it may hold
    customer data), status, duration, client, bytes sent. No header is logged."""

    def __init__(self, app: ASGIApp, log: JsonLines) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = {"status": 500, "bytes": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            self.log.write(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": state["status"],
                    "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                    "client": client[0] if client else None,
                    "bytes": state["bytes"],
                }
            )


def required_scope(method: str, path: str) -> str | None:
    if path in OPEN_PATHS:
        return None
    if method == "POST" and path == "/events":
        return "ingest"
    return "read"


class BearerAuth:
    """Checks ``Authorization: Bearer TOKEN`` (or, for reading, the dashboard's login cookie)
    against the tokens and the scope the request needs: 401 without a known token, 403 without
    the scope. With no tokens configured every request passes (the server then listens on
    loopback only)."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens:
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope["method"], scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope, cookie_too=needed == "read")
        scopes = self.tokens.scopes(presented) if presented is not None else None
        if scopes is None:
            detail = (
                "no bearer token (send Authorization: Bearer TOKEN)"
                if presented is None
                else "unknown token"
            )
            await _send_problem(
                send, 401, "Unauthorized", detail,
                [(b"www-authenticate", b'Bearer realm="evflow"')],
                html=_wants_html(scope) and scope["method"] == "GET" and scope["path"] == "/",
            )  # fmt: skip
            return
        if needed not in scopes:
            await _send_problem(
                send, 403, "Forbidden", f"this token lacks the '{needed}' scope", []
            )
            return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope, cookie_too: bool) -> str | None:
    value = _header(scope, b"authorization")
    if value is not None:
        scheme, _, token = value.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    if cookie_too:
        cookies = _header(scope, b"cookie") or ""
        for part in cookies.split(";"):
            name, _, token = part.strip().partition("=")
            if name == COOKIE and token:
                from urllib.parse import unquote

                return unquote(token)
    return None


def _wants_html(scope: Scope) -> bool:
    return "text/html" in (_header(scope, b"accept") or "")


LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>evflow: sign in</title>
<style>body{font:16px system-ui,sans-serif;max-width:28em;margin:3em auto;padding:0 1em}
input,button{font:inherit;padding:.4em;width:100%;margin:.3em 0}</style></head><body>
<h1>evflow</h1><p>This server needs a token with the <b>read</b> scope.</p>
<form method="post" action="login"><label>Token <input name="token" type="password"
autocomplete="current-password" required></label><button>Sign in</button></form></body></html>
"""


async def _send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]],
    html: bool = False,
) -> None:
    if html:
        body = LOGIN_PAGE.encode()
        ctype = b"text/html; charset=utf-8"
    else:
        body = json.dumps(problem_body(status, title, detail)).encode()
        ctype = PROBLEM.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
