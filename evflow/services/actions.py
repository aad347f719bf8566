"""Executing one ``run`` or ``http`` action for one event. No database here: see dispatch.

Event data reaches a program only as argv elements, environment values or stdin; there is never a
shell in between, so ``"; rm -rf / #"`` in an event is just a string. A program runs in its own
session (process group): a timeout kills the whole group, and a Ctrl-C meant for ``evflow run``
does not reach it, so the action in hand finishes and is recorded.

httpx is imported only when an http action runs, so commands that never call a webhook do not pay
for it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evflow.core.events import Event, to_json
from evflow.core.expressions import EvaluationError
from evflow.core.records import Delivery
from evflow.core.rules import HttpAction, RunAction, event_variables
from evflow.core.text import as_text, redact, redact_text

STDERR_TAIL = 1000
BODY_START = 300  # characters of an answer's body kept in last_error
MAX_BODY = 64 * 1024  # bytes of an answer's body read at most; the rest is never downloaded


@dataclass(frozen=True, slots=True)
class ActionResult:
    """How one attempt went; ``permanent``: retrying cannot help (a template fails)."""

    ok: bool
    error: str | None = None
    output: dict[str, Any] | None = None  # run + emit_result: the program's stdout object
    permanent: bool = False


def execute(
    action: RunAction | HttpAction, event: Event, delivery: Delivery, base_dir: Path
) -> ActionResult:
    """Run ``action`` for ``event``; never raises for a failing target."""
    try:
        if isinstance(action, RunAction):
            return run_program(action, event, delivery, base_dir)
        return call_webhook(action, event, delivery)
    except EvaluationError as exc:
        where = f" ({action.location})" if action.location else ""
        return ActionResult(False, f"template{where}: {exc}", permanent=True)


def environment(
    action: RunAction, event: Event, delivery: Delivery, variables: Mapping[str, Any]
) -> dict[str, str]:
    env = dict(os.environ)
    if action.env is not None:
        rendered = action.env.render(variables)
        if not isinstance(rendered, dict):
            raise EvaluationError("env must render to a map")
        env.update({str(k): as_text(v) for k, v in rendered.items()})
    env["EVFLOW_DELIVERY_ID"] = delivery.idempotency_key
    env["EVFLOW_EVENT_ID"] = str(event["id"])
    env["EVFLOW_EVENT_TYPE"] = str(event["type"])
    return env


def run_program(
    action: RunAction, event: Event, delivery: Delivery, base_dir: Path
) -> ActionResult:
    """Run the argv (no shell) in ``action.cwd`` or ``base_dir``; exit 0 is success."""
    variables = event_variables(event)
    argv = action.argv.render(variables)
    if not isinstance(argv, list) or not argv:
        raise EvaluationError("run must render to a non-empty argv list")
    args = [as_text(a) for a in argv]
    env = environment(action, event, delivery, variables)
    if action.stdin is None:
        stdin = to_json(event).encode()
    else:
        stdin = as_text(action.stdin.render(variables)).encode()
    cwd = action.cwd or str(base_dir)
    try:
        proc = _Program(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return ActionResult(False, f"cannot run {args[0]}: {exc.strerror or exc} (cwd {cwd})")
    try:
        out, err = proc.communicate(stdin, timeout=action.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()  # a grandchild left the group and keeps the pipes: stop waiting for it
        return ActionResult(
            False, f"{args[0]}: timed out after {action.timeout:g}s (process group killed)"
        )
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
        if proc.returncode < 0:
            status = f"killed by {_signal_name(-proc.returncode)}"
        else:
            status = f"exit {proc.returncode}"
        return ActionResult(False, f"{args[0]}: {status}" + (f": {tail}" if tail else ""))
    if action.emit_result is None:
        return ActionResult(True)
    try:
        value = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return ActionResult(False, f"{args[0]}: emit_result: stdout is not JSON ({exc})")
    if not isinstance(value, dict):
        return ActionResult(False, f"{args[0]}: emit_result: stdout must be a JSON object")
    return ActionResult(True, output=value)


class _Program(subprocess.Popen[bytes]):
    """A program's process. ``communicate(timeout=…)`` ends by waiting for the exit with that
    timeout, which Popen does by polling ``waitpid`` with sleeps that double up to 50 ms (a third
    of a trivial delivery's time, issue 16); here the wait sleeps in ``poll`` on a pidfd, woken
    when the program exits (Linux 5.3+; elsewhere, Popen's own wait)."""

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None or self.returncode is not None or not hasattr(os, "pidfd_open"):
            return super().wait(timeout)
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:  # an old kernel, or already reaped
            return super().wait(timeout)
        try:
            waiting = select.poll()
            waiting.register(pidfd, select.POLLIN)
            if not waiting.poll(max(timeout, 0) * 1000):
                raise subprocess.TimeoutExpired(self.args, timeout)
        finally:
            os.close(pidfd)
        return super().wait()  # it has exited: waitpid returns at once


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def call_webhook(action: HttpAction, event: Event, delivery: Delivery) -> ActionResult:
    """Send the request; a 2xx answer is success, anything else keeps status and body start."""

    variables = event_variables(event)
    url = as_text(action.url.render_url(variables))
    shown = redact(url)  # what messages and last_error say: never a password
    headers: dict[str, str] = {"User-Agent": "evflow"}
    if action.headers is not None:
        rendered = action.headers.render(variables)
        if not isinstance(rendered, dict):
            raise EvaluationError("headers must render to a map")
        headers.update({str(k): as_text(v) for k, v in rendered.items()})
    headers["Idempotency-Key"] = delivery.idempotency_key
    lower = {k.lower() for k in headers}
    if action.body is None:
        content = to_json(event).encode()
        content_type = "application/json"
    else:
        body = action.body.render(variables)
        if isinstance(body, str):
            content, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            content = json.dumps(body, ensure_ascii=False).encode()
            content_type = "application/json"
    if "content-type" not in lower:
        headers["Content-Type"] = content_type
    answer = _request(action.method, url, content, headers, action.timeout)
    if isinstance(answer, str):
        return ActionResult(False, f"{action.method} {shown}: {answer}")
    status, start = answer
    if 200 <= status < 300:
        return ActionResult(True)
    return ActionResult(
        False, f"{action.method} {shown}: HTTP {status}" + (f": {start}" if start else "")
    )


def body_text(raw: bytes, encoding: str) -> str:
    """An answer's body (its first bytes as sent) as text, decompressed to at most
    :data:`MAX_BODY` bytes when it is gzip or deflate encoded."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        # 47: a gzip or zlib header, found by zlib; -15: deflate without a header
        for wbits in (47, -15):
            try:
                raw = zlib.decompressobj(wbits).decompress(raw, MAX_BODY)
                break
            except zlib.error:
                continue
        else:
            return f"({encoding}-encoded body that does not decode)"
    elif encoding not in ("", "identity"):
        return f"({encoding}-encoded body)"
    return raw.decode("utf-8", "replace")


def _request(
    method: str, url: str, content: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, str] | str:
    """One request under a total deadline of ``timeout`` seconds (connect, headers and body
    together: a server dribbling a byte at a time cannot hold it longer), reading at most
    :data:`MAX_BODY` bytes of the answer. ``(status, start of the body)``, or why it failed.

    The request runs in a thread that is abandoned at the deadline (its socket is closed):
    httpx's own timeouts are per operation, so a slow but steady server would never trip them.
    """
    import threading

    import httpx

    client = httpx.Client(timeout=timeout, follow_redirects=False)
    outcome: list[tuple[int, str] | str] = []

    def work() -> None:
        try:
            with client.stream(method, url, content=content, headers=headers) as response:
                # the bytes as sent: decoding a Content-Encoding as it comes would let a gzip
                # bomb of 64 KiB swell to 64 MB in one chunk
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) >= MAX_BODY:
                        break  # the rest is never read: leaving the block closes the connection
                encoding = response.headers.get("Content-Encoding", "")
            text = body_text(bytes(body[:MAX_BODY]), encoding)
            outcome.append((response.status_code, text[:BODY_START].strip()))
        except httpx.TimeoutException:
            outcome.append(f"timed out after {timeout:g}s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            outcome.append(f"{type(exc).__name__}: {redact_text(str(exc))}")
        except Exception as exc:  # noqa: BLE001 - a header that is not ASCII, …: this delivery's
            outcome.append(f"{type(exc).__name__}: {redact_text(str(exc))}")

    thread = threading.Thread(target=work, name="evflow-http", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        client.close()
        return f"timed out after {timeout:g}s (total deadline)"
    client.close()
    return outcome[0] if outcome else "no answer"
