"""Helpers of the adversarial suite: the CLI as a user drives it, scripted servers, raw SQL.

Every test here is black-box: it drives ``evflow`` through its command line (in process with
``run_cli``, or as a real process where bytes, signals or users matter) and judges what a user
sees: exit statuses, one-line errors, the log, deliveries and what a webhook received.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import Result, evflow_exe, run_cli

PY = sys.executable


def cli(*args: str, stdin: str | None = None) -> Result:
    return run_cli(list(args), stdin=stdin)


def ok(*args: str, stdin: str | None = None) -> Result:
    """A command that must succeed (exit 0)."""
    result = run_cli(list(args), stdin=stdin)
    assert result.exit_code == 0, (args, result.exit_code, result.stdout[-2000:], result.stderr)
    return result


def as_json(*args: str, stdin: str | None = None) -> Any:
    """A command's ``--format json`` output, parsed (the command must succeed)."""
    return json.loads(ok(*args, "--format", "json", stdin=stdin).stdout)


def events(*global_opts: str) -> list[dict[str, Any]]:
    """Every event of the log, in seq order (``log --format jsonl``)."""
    out = ok(*global_opts, "log", "--format", "jsonl").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def deliveries(*global_opts: str) -> list[dict[str, Any]]:
    return as_json(*global_opts, "deliveries")  # type: ignore[no-any-return]


def rule_errors(ref: str | int, *global_opts: str) -> list[dict[str, Any]]:
    """What ``evflow show`` records about the rules that failed on one event."""
    shown = as_json(*global_opts, "show", str(ref))
    return shown["rule_errors"]  # type: ignore[no-any-return]


def assert_one_line_error(result: Result, code: int = 2, *names: str) -> None:
    """A bad input: exit ``code``, one line on stderr naming ``names``, never a traceback hint."""
    assert result.exit_code == code, (result.exit_code, result.stdout[-500:], result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("hint:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr and "--traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in errors[0], (name, errors[0])


def write_rules(project: Path, text: str, name: str = "x.yaml") -> Path:
    folder = project / "rules"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("version: 1\n" + text)
    return folder


def script(path: Path, body: str) -> str:
    """A small Python program for a run action; returns its path."""
    path.write_text("import json, os, sys\n" + body)
    return str(path)


def run_bytes(
    args: list[bytes | str],
    cwd: Path,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """evflow as a process, with arguments and stdin as raw bytes (invalid UTF-8 included)."""
    return subprocess.run(
        [evflow_exe(), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


# -- scripted HTTP servers ----------------------------------------------------------------------


@dataclass
class Server:
    """A local HTTP server whose every answer is ``respond(handler)``; it records requests."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


@contextmanager
def http_server(respond: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[Server]:
    server_state = Server()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            with server_state.lock:
                server_state.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "at": time.monotonic(),
                    }
                )
            # the client may give up (a deadline, a bounded body), as it should
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                respond(self)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815 - http.server names

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


def answer(status: int, body: bytes = b"ok", headers: dict[str, str] | None = None) -> Callable:
    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return respond


def dribble(seconds: float, every: float = 0.25) -> Callable:
    """200 with a declared body that arrives one byte at a time: no single read ever times out."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        count = int(seconds / every) + 1
        h.send_response(200)
        h.send_header("Content-Length", str(count))
        h.end_headers()
        h.wfile.flush()
        for _ in range(count):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(every)

    return respond


def endless(status: int, seconds: float = 8.0, rate: int = 1 << 20) -> Callable:
    """``status`` with a chunked body that goes on for ``seconds`` at ``rate`` bytes/s: a
    client that reads it all takes ``seconds`` (gently: ~8 MB, not a memory bomb)."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"y" * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            h.wfile.write(frame)
            h.wfile.flush()
            time.sleep(len(chunk) / rate)
        h.wfile.write(b"0\r\n\r\n")

    return respond


@functools.cache
def _gzip_zeros(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about a thousandth of that)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def huge(status: int, size: int = 200 << 20, encoding: str = "identity") -> Callable:
    """``status`` with a ``size``-byte body sent as fast as the client reads it, as it is
    (``identity``) or as a gzip bomb (``gzip``: a small answer that decodes to ``size`` bytes)."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        if encoding == "gzip":
            payload = _gzip_zeros(size)
            h.send_header("Content-Encoding", "gzip")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        h.send_header("Content-Length", str(size))
        h.end_headers()
        block = b"y" * (1 << 20)
        for _ in range(size >> 20):
            h.wfile.write(block)

    return respond


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- raw SQL on the test's database (fault injection) ------------------------------------------


def database_url(project: Path) -> str:
    """The log the CLI uses in this test: EVFLOW_DB (PostgreSQL) or the default SQLite file."""
    return os.environ.get("EVFLOW_DB") or str(project / ".evflow" / "evflow.db")


def sql(url: str, *statements: str) -> list[list[tuple[Any, ...]]]:
    """Run statements on the log's database directly (outside evflow); rows of each. ``url``:
    the log's (a SQLite path or a PostgreSQL URL with ``?schema=``) or a MariaDB/MySQL URL."""
    out: list[list[tuple[Any, ...]]] = []
    if url.startswith("postgresql"):
        from urllib.parse import parse_qs, urlsplit, urlunsplit

        import psycopg

        parts = urlsplit(url)
        schema = parse_qs(parts.query).get("schema", ["public"])[0]
        with psycopg.connect(urlunsplit(parts._replace(query="")), autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            for statement in statements:
                cur = conn.execute(statement)
                out.append(list(cur.fetchall()) if cur.description else [])
        return out
    if url.startswith("mysql"):
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    result = conn.exec_driver_sql(statement)
                    out.append([tuple(r) for r in result] if result.returns_rows else [])
        finally:
            engine.dispose()
        return out
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        for statement in statements:
            out.append(list(conn.execute(statement).fetchall()))
    finally:
        conn.close()
    return out


def fail_writes(url: str, table: str, when: str = "TRUE", name: str = "hostile_fault") -> None:
    """Make every INSERT/UPDATE on ``table`` (whose new row satisfies ``when``) fail: a fault
    injected in the database itself, so evflow meets it exactly where a full disk would be.
    (On MariaDB/MySQL, quote a column named ``key`` in ``when``: ``NEW.`key```.)"""
    message = f"injected fault on {table}"
    if url.startswith("postgresql"):
        sql(
            url,
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF {when} THEN RAISE EXCEPTION '{message}'; END IF;"
            " RETURN NEW; END $$",
            f'CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON "{table}"'
            f" FOR EACH ROW EXECUTE FUNCTION {name}()",
        )
        return
    if url.startswith("mysql"):
        sql(
            url,
            *(
                f"CREATE TRIGGER {name}_{op[0].lower()} BEFORE {op} ON `{table}` FOR EACH ROW"
                f" BEGIN IF {when} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}';"
                " END IF; END"
                for op in ("INSERT", "UPDATE")
            ),
        )
        return
    when_sql = when.replace("TRUE", "1")
    sql(
        url,
        f'CREATE TRIGGER {name}_i BEFORE INSERT ON "{table}" WHEN {when_sql}'
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END",
        f'CREATE TRIGGER {name}_u BEFORE UPDATE ON "{table}" WHEN {when_sql}'
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END",
    )


def heal(url: str, table: str, name: str = "hostile_fault") -> None:
    if url.startswith("postgresql"):
        sql(
            url,
            f'DROP TRIGGER IF EXISTS {name} ON "{table}"',
            f"DROP FUNCTION IF EXISTS {name}()",
        )
        return
    sql(url, f"DROP TRIGGER IF EXISTS {name}_i", f"DROP TRIGGER IF EXISTS {name}_u")
