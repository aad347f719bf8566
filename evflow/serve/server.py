"""Running the app on uvicorn: options, JSON logs on stderr, graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from signal import SIGINT, SIGTERM
from types import FrameType
from typing import Any

from evflow.app import Evflow
from evflow.errors import MissingExtra, UsageError
from evflow.serve.auth import Tokens, is_loopback
from evflow.serve.http import JsonLines

#: seconds the requests in hand get to finish after SIGTERM
GRACE_SECONDS = 25


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = 1024 * 1024
    threads: int = 8


def check_bind(host: str, tokens: Tokens) -> None:
    """Without tokens anyone who reaches the server may write and read the log: loopback only."""
    if not tokens and not is_loopback(host):
        raise UsageError(
            f"--host {host}: refusing to listen beyond this machine without tokens",
            hint="set EVFLOW_TOKENS or --tokens FILE (see docs/serve.md), or keep --host 127.0.0.1",
        )


class _JsonFormatter(logging.Formatter):
    """uvicorn's own messages as JSON objects, like the access log."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        from evflow.core.text import redact_text
        from evflow.serve.http import _now

        message = redact_text(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message += f" ({type(exc).__name__}: {redact_text(str(exc))})"
        entry = {"time": _now(), "level": record.levelname.lower(), "message": message}
        return json.dumps(entry, ensure_ascii=False)


LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": _JsonFormatter}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


def run(factory: Callable[[], Evflow], tokens: Tokens, options: ServeOptions) -> None:
    """Serve until SIGTERM/SIGINT; the requests in hand finish first."""
    check_bind(options.host, tokens)
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise MissingExtra(exc.name or "starlette", "serve") from None
    from importlib.metadata import PackageNotFoundError, version

    from evflow.serve.api import Context, create_app
    from evflow.serve.flows import Flows
    from evflow.serve.http import AccessLog, BearerAuth
    from evflow.serve.writer import Writer

    try:
        evflow_version = version("evflow")
    except PackageNotFoundError:
        evflow_version = "unknown"
    log = JsonLines()
    flows = Flows(
        factory, options.threads, warn=lambda text: log.write({"level": "warning", "message": text})
    )
    ctx = Context(
        flows=flows,
        writer=Writer(flows), tokens=tokens, max_body=options.max_body, log=log,
        version=evflow_version, stopping=asyncio.Event(),
    )  # fmt: skip
    app = AccessLog(BearerAuth(create_app(ctx), tokens), log)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            loop = _loop
            if loop is not None:
                loop.call_soon_threadsafe(ctx.stopping.set)  # server-sent event streams end
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after its graceful shutdown (the process then dies of
            # it); a shutdown that went as asked is a success: exit 0
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {s: signal.signal(s, self.handle_exit) for s in (SIGINT, SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    _loop: asyncio.AbstractEventLoop | None = None
    config = uvicorn.Config(
        app, host=options.host, port=options.port, log_config=LOG_CONFIG, access_log=False,
        lifespan="off", timeout_graceful_shutdown=GRACE_SECONDS, server_header=False,
        proxy_headers=False,
    )  # fmt: skip
    server = Server(config)

    async def main() -> None:
        nonlocal _loop
        _loop = asyncio.get_running_loop()
        where = f"http://{_host_text(options.host)}:{options.port}"
        # open the database and load the rules before the first request, and say how it went;
        # a database that is down does not stop the server: /readyz says 503 until it is back
        try:
            database = await flows.run(lambda flow: (flow.ruleset, flow.display_url)[1])
            log.write({"level": "info", "message": f"ready: {database}"})
        except Exception as exc:  # noqa: BLE001 - reported, and retried by every request
            log.write({"level": "warning", "message": f"not ready: {problem_detail(exc, log)}"})
        tokens_text = "bearer tokens required" if tokens else "no tokens: loopback only"
        log.write({"level": "info", "message": f"evflow serve on {where} ({tokens_text})"})
        await server.serve()

    try:
        asyncio.run(main())
    finally:
        flows.close()


def problem_detail(exc: BaseException, log: JsonLines) -> str:
    import json

    from evflow.serve.answers import problem_for

    return str(json.loads(bytes(problem_for(exc, log).body))["detail"])


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host
