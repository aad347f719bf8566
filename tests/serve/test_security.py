"""Tokens and scopes, loopback-only without tokens, secrets never shown, the access log, and
a database that cannot be reached."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.serve.ce import make, post_structured
from tests.serve.server import free_port, serve, start_process

FULL = "tok-FULL-5d1c9e"  # distinctive, so a leak into any output is found
VIEWER = "tok-VIEW-77a0b2"
WRITER = "tok-WRITE-c3f88e"
TOKENS = {FULL: ["ingest", "read"], VIEWER: ["read"], WRITER: ["ingest"]}
READ_PATHS = ["/events", "/projections", "/projections/orders", "/deliveries", "/stats", "/"]


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (FULL, VIEWER, WRITER):
            assert secret not in text


@pytest.fixture
def guarded(shop: Path):  # type: ignore[no-untyped-def]
    with serve(shop, env={"EVFLOW_TOKENS": json.dumps(TOKENS)}) as s:
        yield s


def test_missing_or_wrong_token_is_401(guarded) -> None:  # type: ignore[no-untyped-def]
    for token in (None, "not-a-token", FULL + "x", FULL[:-1]):
        with guarded.client(token) as c:
            r = post_structured(c, make("order.placed", {"orderId": "a"}, id="a1"))
            assert r.status_code == 401, (token, r.text)
            assert r.headers["www-authenticate"].lower().startswith("bearer")
            assert r.headers["content-type"].startswith("application/problem+json")
            for path in READ_PATHS:
                assert c.get(path).status_code == 401, path
    with guarded.client() as c:
        r = c.get("/events", headers={"Authorization": f"Basic {FULL}"})
        assert r.status_code == 401
    _assert_no_secret(guarded.stderr())


def test_scopes_are_enforced(guarded) -> None:  # type: ignore[no-untyped-def]
    with guarded.client(VIEWER) as c:
        r = post_structured(c, make("order.placed", {"orderId": "v"}, id="v1"))
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "ingest" in r.json()["detail"]
        for path in READ_PATHS:
            assert c.get(path).status_code == 200, path
    with guarded.client(WRITER) as c:
        r = post_structured(c, make("order.placed", {"orderId": "w"}, id="w1"))
        assert r.status_code == 201, r.text
        for path in READ_PATHS:
            r = c.get(path)
            assert r.status_code == 403, path
            assert "read" in r.json()["detail"]
    with guarded.client(FULL) as c:
        assert (
            post_structured(c, make("order.placed", {"orderId": "f"}, id="f1")).status_code == 201
        )
        assert [e["id"] for e in c.get("/events", params={"type": "order.placed"}).json()] == [
            "w1",
            "f1",
        ]
    _assert_no_secret(guarded.stderr())


def test_health_needs_no_token(guarded) -> None:  # type: ignore[no-untyped-def]
    with guarded.client() as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 200, r.text


def test_tokens_from_a_file(shop: Path, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({VIEWER: ["read"]}))
    with serve(shop, "--tokens", str(path)) as s:
        with s.client() as c:
            assert c.get("/events").status_code == 401
        with s.client(VIEWER) as c:
            assert c.get("/events").status_code == 200
            assert post_structured(c, make("x.y", {}, id="nope")).status_code == 403


@pytest.mark.parametrize(
    "tokens",
    [
        '{"tok-BAD-0001": "read"}',  # scopes not a list
        '{"tok-BAD-0001": ["read", "admin"]}',  # unknown scope
        "tok-BAD-0001",  # not JSON
        "{}",  # no token at all: a typo would open the server
    ],
)
def test_bad_tokens_setting_is_refused_without_echoing_it(shop: Path, tokens: str) -> None:
    proc, err, _ = start_process(
        ["serve", "--port", str(free_port())], shop, env={"EVFLOW_TOKENS": tokens}
    )
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert code == 2
    text = err.read_text()
    assert "EVFLOW_TOKENS" in text
    assert "tok-BAD-0001" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_non_loopback_bind_without_tokens_is_refused(shop: Path, host: str) -> None:
    proc, err, _ = start_process(["serve", "--host", host, "--port", str(free_port())], shop)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("serve bound to a non-loopback address without tokens") from None
    assert code == 2
    text = err.read_text()
    assert "token" in text.lower()
    assert "Traceback" not in text


def test_access_log_is_one_json_object_per_request(guarded) -> None:  # type: ignore[no-untyped-def]
    with guarded.client(FULL) as c:
        post_structured(c, make("order.placed", {"orderId": "log"}, id="log-1"))
        c.get("/events", params={"type": "order.placed"})
        c.get("/nowhere")
    with guarded.client("wrong-" + VIEWER) as c:
        c.get("/events")
    guarded.terminate()
    entries = [e for e in guarded.access_log() if "path" in e]
    seen = [(e["method"], e["path"], e["status"]) for e in entries]
    assert ("POST", "/events", 201) in seen
    assert ("GET", "/events", 200) in seen
    assert ("GET", "/nowhere", 404) in seen
    assert ("GET", "/events", 401) in seen
    for e in entries:
        assert isinstance(e["duration_ms"], int | float)
        assert "time" in e
    _assert_no_secret(guarded.stderr())


def test_database_unreachable_is_503_and_the_password_is_masked(shop: Path) -> None:
    password = "hunter2-Pw-9931"
    db = f"postgresql://evflow:{password}@127.0.0.1:{free_port()}/test?connect_timeout=2"
    with serve(shop, db=db) as s, s.client() as c:
        assert c.get("/healthz").status_code == 200  # alive, not ready
        ready = c.get("/readyz")
        assert ready.status_code == 503
        r = post_structured(c, make("order.placed", {"orderId": "down"}, id="down-1"))
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        for resp in (ready, r, c.get("/events"), c.get("/stats")):
            assert resp.status_code == 503
            assert password not in resp.text
        s.terminate()
        assert password not in s.stderr()
        assert password not in s.stdout_path.read_text()
