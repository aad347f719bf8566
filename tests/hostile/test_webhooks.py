"""Issue 13 §2 and §5: http actions against hostile servers.

- ``timeout`` is a total deadline (connect, headers, body): a server dribbling one byte at a time
  cannot hold a delivery (and so outlive its lease, letting a second worker call it again).
- The response body kept is bounded: an endless body neither hangs nor fills memory.
- Template values put into a URL's path or query are percent-encoded.
- 3xx and 4xx answers are failures (a redirect is not followed and not a success).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.fixtures.dispatch.helpers import answer, dribble, endless, http_server, huge
from tests.hostile.helpers import cli, deliveries, ok, write_rules

pytestmark = pytest.mark.usefixtures("each_backend")


def hook_rule(project: Path, url: str, extra: str = "", retry: str = "{attempts: 3}") -> None:
    write_rules(
        project,
        "rules:\n  - name: hook\n    on: ping\n    then:\n"
        f"      - http: {json.dumps(url)}\n{extra}"
        f"    retry: {retry}\n",
    )


def test_timeout_is_a_deadline_for_the_whole_request(project: Path) -> None:
    with http_server(dribble(seconds=12)) as server:
        hook_rule(project, server.url + "/slow", "        timeout: 1s\n")
        started = time.monotonic()
        result = cli("emit", "ping")
        elapsed = time.monotonic() - started
        assert result.exit_code == 0
        assert elapsed < 6, f"a 1 s timeout took {elapsed:.1f}s against a dribbling server"
        [d] = deliveries()
        assert d["status"] == "failed" and "timed out" in d["last_error"]
        assert d["attempts"] == 1


def test_two_workers_never_call_a_slow_webhook_twice(project: Path) -> None:
    """The lease outlasts the deadline: a second worker finds the delivery taken."""
    with http_server(dribble(seconds=12)) as server:
        hook_rule(project, server.url + "/slow", "        timeout: 2s\n", "{attempts: 1}")
        ok("emit", "ping", "--no-dispatch")
        import os
        import subprocess

        from tests.conftest import evflow_exe

        env = dict(os.environ)
        workers = [
            subprocess.Popen([evflow_exe(), "run", "--once"], cwd=project, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]  # fmt: skip
        for w in workers:
            w.communicate(timeout=60)
        assert server.count() == 1
        [d] = deliveries()
        assert d["status"] == "dead" and d["attempts"] == 1


@pytest.mark.parametrize("status", [200, 500])
def test_an_endless_body_is_cut_short(project: Path, status: int) -> None:
    with http_server(endless(status, seconds=8)) as server:
        hook_rule(project, server.url + "/big", "        timeout: 20s\n")
        started = time.monotonic()
        result = cli("emit", "ping")
        elapsed = time.monotonic() - started
        assert result.exit_code == 0
        assert elapsed < 4, f"read an endless body for {elapsed:.1f}s"
        [d] = deliveries()
        if status == 200:
            assert d["status"] == "done"
        else:
            assert d["status"] == "failed" and "HTTP 500" in d["last_error"]
            assert len(d["last_error"]) < 70_000


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_200_mb_body_keeps_the_workers_memory_bounded(project: Path, encoding: str) -> None:
    """The body cap bounds memory, not only time: a worker answered with 200 MB (or with a gzip
    bomb that decodes to 200 MB) peaks within a few MB of one answered ``no``, and keeps a few
    hundred characters of it."""
    from tests.conftest import run_measured

    def peak(url: str) -> int:
        hook_rule(project, url, "        timeout: 20s\n", "{attempts: 1}")
        measured = run_measured(["emit", "ping"], project)
        assert measured.returncode == 0, measured.stderr
        return measured.peak_rss_kb

    bomb = huge(500, 200 << 20, encoding)
    with http_server(answer(500, b"no")) as small, http_server(bomb) as big:
        started = time.monotonic()
        baseline = peak(small.url + "/small")
        bombed = peak(big.url + "/big")
        elapsed = time.monotonic() - started
    assert bombed - baseline < 16_000, f"peak RSS {baseline} kB, then {bombed} kB for 200 MB"
    assert elapsed < 5, f"{elapsed:.1f}s"
    first, second = deliveries()
    assert first["status"] == second["status"] == "dead"
    assert first["last_error"].endswith("HTTP 500: no")
    kept = second["last_error"]
    assert "HTTP 500" in kept and len(kept) < 1000  # the start of the body, never all of it
    # decoded (a NUL is kept as \\0), as far as the cap allows
    assert ("y" * 200 if encoding == "identity" else "\\0" * 200) in kept


def test_template_values_in_a_url_are_percent_encoded(project: Path) -> None:
    with http_server(answer(200)) as server:
        url = server.url + "/orders/${{ data.orderId }}/items?note=${{ data.note }}&n=1"
        hook_rule(project, url, "        timeout: 5s\n")
        order_id, note = "a/b?c#d %2F é", "x&y=z#w+v"
        ok("emit", "ping", "--data", json.dumps({"orderId": order_id, "note": note}))
        [request] = server.requests
        parts = urlsplit(request["path"])
        segments = parts.path.split("/")
        assert segments[:2] == ["", "orders"] and segments[3:] == ["items"], parts.path
        assert unquote(segments[2]) == order_id
        assert parse_qs(parts.query) == {"note": [note], "n": ["1"]}
        [d] = deliveries()
        assert d["status"] == "done"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_a_success(project: Path, status: int) -> None:
    with http_server(answer(status, b"moved", {"Location": "/elsewhere"})) as server:
        hook_rule(project, server.url + "/hook", "        timeout: 5s\n")
        result = cli("emit", "ping")
        assert result.exit_code == 0 and f"HTTP {status}" in result.stderr
        [d] = deliveries()
        assert d["status"] == "failed" and f"HTTP {status}" in d["last_error"]
        assert [r["path"] for r in server.requests] == ["/hook"]  # not followed


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 429])
def test_a_client_error_fails_the_delivery_with_the_answer(project: Path, status: int) -> None:
    body = b'{"error": "nope"}'
    with http_server(answer(status, body)) as server:
        hook_rule(project, server.url + "/hook", "        timeout: 5s\n")
        strict = cli("emit", "ping", "--strict")
        assert strict.exit_code == 1
        [d] = deliveries()
        assert d["status"] == "failed" and f"HTTP {status}" in d["last_error"]
        assert "nope" in d["last_error"]
        assert d["attempts"] == 1 and server.count() == 1
