"""The query side over HTTP: the same JSON as the CLI's, paging, streaming, health."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_process
from tests.serve.ce import make, post_structured
from tests.serve.server import Server

AMOUNTS = {"o-1": 50, "o-2": 150, "o-3": 250, "o-4": 20, "o-5": 120}


@pytest.fixture
def filled(server: Server, shop: Path) -> Server:
    with server.client() as c:
        for i, (order, amount) in enumerate(AMOUNTS.items()):
            r = post_structured(
                c, make("order.placed", {"orderId": order, "amount": amount}, id=f"ev-{i}")
            )
            assert r.status_code == 201, r.text
        r = post_structured(c, make("order.cancelled", {"orderId": "o-4"}, id="ev-cancel"))
        assert r.status_code == 201
    return server


def cli_json(shop: Path, *args: str):  # type: ignore[no-untyped-def]
    p = run_process([*args, "--format", "json"], shop)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def follow_pages(c: httpx.Client, path: str, **params: str) -> tuple[list, int]:
    """Every item over all pages (``Link: rel=next``) and how many pages it took."""
    items: list = []
    pages = 0
    url: str | None = path
    query: dict | None = params
    while url is not None:
        r = c.get(url, params=query)
        assert r.status_code == 200, r.text
        pages += 1
        items.extend(r.json())
        url = r.links.get("next", {}).get("url")
        query = None
        assert pages < 100
    return items, pages


def test_projection_rows_are_the_clis(filled: Server, shop: Path) -> None:
    with filled.client() as c:
        rows = c.get("/projections/orders").json()
        assert [r["key"] for r in rows] == ["o-1", "o-2", "o-3", "o-5"]
        assert rows == cli_json(shop, "query", "orders")
        where = "state.amount > 100"
        got = c.get("/projections/orders", params={"where": where}).json()
        assert [r["key"] for r in got] == ["o-2", "o-3", "o-5"]
        assert got == cli_json(shop, "query", "orders", "--where", where)
        one = c.get("/projections/orders/o-3")
        assert one.status_code == 200
        assert one.json() == cli_json(shop, "query", "orders", "o-3")[0]


def test_projection_as_of(filled: Server, shop: Path) -> None:
    with filled.client() as c:
        # the cancel of o-4 is the last event: just before it, o-4 was still there
        last = c.get("/events", params={"type": "order.cancelled"}).json()[0]["seq"]
        before = c.get("/projections/orders", params={"as_of": str(last - 1)}).json()
        assert "o-4" in [r["key"] for r in before]
        assert before == cli_json(shop, "query", "orders", "--as-of", str(last - 1))
        old = c.get("/projections/orders", params={"as_of": "2000-01-01T00:00:00Z"}).json()
        assert old == []
        bad = c.get("/projections/orders", params={"as_of": "soon"})
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")


def test_projection_paging(filled: Server) -> None:
    with filled.client() as c:
        first = c.get("/projections/orders", params={"limit": "2"})
        assert [r["key"] for r in first.json()] == ["o-1", "o-2"]
        assert "next" in first.links
        items, pages = follow_pages(c, "/projections/orders", limit="2")
        assert [r["key"] for r in items] == ["o-1", "o-2", "o-3", "o-5"]
        assert pages in (2, 3)  # the last page may be empty or not
        items, _ = follow_pages(c, "/projections/orders", limit="1", where="state.amount > 100")
        assert [r["key"] for r in items] == ["o-2", "o-3", "o-5"]
        assert c.get("/projections/orders", params={"cursor": "garbage!"}).status_code == 400
        assert c.get("/projections/orders", params={"limit": "-1"}).status_code == 400


def test_projection_errors(filled: Server) -> None:
    with filled.client() as c:
        for path, status in (
            ("/projections/nope", 404),
            ("/projections/orders/o-4", 404),
            ("/projections/orders?where=state.amount >", 400),
        ):
            r = c.get(path)
            assert r.status_code == status, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        # the problem names the query parameter, not the CLI's option
        detail = c.get("/projections/orders", params={"where": "state.amount >"}).json()["detail"]
        assert detail.startswith("where: ") and "--where" not in detail, detail


def test_projections_list(filled: Server) -> None:
    with filled.client() as c:
        c.get("/projections/orders")  # brings it up to date
        listed = c.get("/projections").json()
        names = [p["name"] for p in listed]
        assert names == ["orders"]
        orders = listed[0]
        assert orders["lag"] == 0
        assert orders["position"] == c.get("/stats").json()["last_seq"]


def test_events_are_the_clis_log(filled: Server, shop: Path) -> None:
    with filled.client() as c:
        events = c.get("/events").json()
        assert events == cli_json(shop, "log")
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        typed = c.get("/events", params={"type": "order.placed"}).json()
        assert [e["id"] for e in typed] == [f"ev-{i}" for i in range(5)]
        globbed = c.get("/events", params={"type": "order.*"}).json()
        assert len(globbed) == 6
        since = c.get("/events", params={"since": "3"}).json()
        assert [e["seq"] for e in since] == [e["seq"] for e in events if e["seq"] > 3]
        assert len(c.get("/events", params={"limit": "2"}).json()) == 2
        items, pages = follow_pages(c, "/events", limit="3")
        assert items == events
        assert pages >= 3
        assert c.get("/events", params={"since": "tomorrow-ish"}).status_code == 400


def test_events_stream_as_ndjson(filled: Server) -> None:
    with filled.client() as c:
        expected = c.get("/events").json()
        with c.stream("GET", "/events", headers={"Accept": "application/x-ndjson"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            assert "content-length" not in r.headers  # streamed, not built in memory
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert lines == expected


def test_one_event_is_the_clis_show(filled: Server, shop: Path) -> None:
    with filled.client() as c:
        shown = c.get("/events/ev-1").json()  # o-2, 150: a derived event and a delivery
        assert shown == cli_json(shop, "show", "ev-1")
        assert shown["event"]["id"] == "ev-1"
        assert [x["event"]["type"] for x in shown["caused"]] == ["shipment.requested"]
        assert [d["rule"] for d in shown["deliveries"]] == ["notify-sales"]
        r = c.get("/events/no-such-id")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")


def test_deliveries_and_stats_are_the_clis(filled: Server, shop: Path) -> None:
    with filled.client() as c:
        deliveries = c.get("/deliveries").json()
        assert deliveries == cli_json(shop, "deliveries")
        assert sorted(d["event_id"] for d in deliveries) == ["ev-1", "ev-2", "ev-4"]
        assert c.get("/deliveries", params={"status": "pending"}).json() == deliveries
        assert c.get("/deliveries", params={"status": "dead"}).json() == []
        assert c.get("/deliveries", params={"status": "bogus"}).status_code == 400
        stats = c.get("/stats").json()
        assert stats == cli_json(shop, "stats")
        assert stats["events"] == 6 + 5  # and the five shipment.requested


def test_health(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json()["status"] == "ok"
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"


def test_unknown_path_is_a_404_problem(server: Server) -> None:
    with server.client() as c:
        r = c.get("/nowhere")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert c.delete("/events").status_code == 405


def test_events_as_server_sent_events(server: Server) -> None:
    with server.client() as c:
        assert post_structured(c, make("before.open", {}, id="sse-0")).status_code == 201
        headers = {"Accept": "text/event-stream"}
        with c.stream("GET", "/events", headers=headers, timeout=20) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            with httpx.Client(base_url=server.url) as other:
                r2 = post_structured(other, make("after.open", {"n": 1}, id="sse-1"))
                assert r2.status_code == 201
            got = None
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got = json.loads(line.removeprefix("data: "))
                    break
        assert got is not None and got["id"] == "sse-1"  # only what came after it opened
        # resuming from a seq (Last-Event-ID) replays what came after it
        with c.stream("GET", "/events", headers={**headers, "Last-Event-ID": "0"}) as r:
            ids = []
            for line in r.iter_lines():
                if line.startswith("data: "):
                    ids.append(json.loads(line.removeprefix("data: "))["id"])
                    if len(ids) == 2:
                        break
        assert ids == ["sse-0", "sse-1"]


def test_numbers_no_database_can_hold_are_a_400(server: Server) -> None:
    with server.client() as c:
        for params in (
            {"limit": "9" * 5000},
            {"since": "9" * 20},
            {"until": "9" * 5000},
            {"cursor": "9" * 25},
        ):
            r = c.get("/events", params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        assert c.get("/projections/orders", params={"as_of": "9" * 30}).status_code == 400
        # a position is read as the CLI reads it (one parser): the largest a log can hold is one
        assert c.get("/events", params={"since": str(2**63 - 1)}).json() == []
        beyond = c.get("/events", params={"since": str(2**63)}).json()["detail"]
        assert beyond == f"since: {2**63} is out of range (0 to {2**63 - 1})"
        unicode_digits = c.get("/events", params={"since": "\u0663"})  # an Arabic-Indic three
        assert unicode_digits.status_code == 400
        assert unicode_digits.json()["detail"].startswith("since: expected a seq or an RFC 3339")
