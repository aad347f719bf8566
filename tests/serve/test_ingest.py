"""POST /events: the CloudEvents HTTP binding (structured, binary, batch), made by the SDK."""

from __future__ import annotations

import json

import pytest

from tests.serve.ce import (
    BATCH,
    assert_same,
    batch_body,
    make,
    post_batch,
    post_binary,
    post_structured,
    read_back,
)
from tests.serve.server import Server

PROBLEM = "application/problem+json"

STRUCTURED_CASES = {
    "json-object": lambda: make(
        "order.placed",
        {"orderId": "o-1", "amount": 150, "items": [1, 2]},
        id="s-obj",
        subject="member-7",
        datacontenttype="application/json",
        dataschema="https://shop.example/schemas/order.json",
        tenant="acme",
        priority=3,
        urgent=True,
    ),
    "json-array": lambda: make(
        "list.made", [1, "two", None], id="s-arr", datacontenttype="application/json"
    ),
    "text": lambda: make("note.taken", "plain words", id="s-text", datacontenttype="text/plain"),
    "bytes": lambda: make(
        "blob.stored",
        bytes(range(256)),
        id="s-bytes",
        datacontenttype="application/octet-stream",
    ),
    "json-with-charset": lambda: make(
        "order.placed",
        {"orderId": "o-2"},
        id="s-charset",
        datacontenttype="application/json; charset=utf-8",
    ),
    "no-data": lambda: make("ping.sent", None, id="s-none"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURED_CASES))
def test_structured_event_is_recorded_and_read_back_equal(server: Server, case: str) -> None:
    event = STRUCTURED_CASES[case]()
    with server.client() as c:
        r = post_structured(c, event)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["id"] == event.get_id()
        assert body["source"] == event.get_source()
        assert body["duplicate"] is False
        assert isinstance(body["seq"], int) and body["seq"] >= 1
        assert r.headers["location"].endswith(f"/events/{body['seq']}")
        assert_same(event, read_back(c, event.get_id()))


def test_location_names_the_recorded_event_whatever_its_id(server: Server) -> None:
    """``Location`` leads to the event just recorded: an id is unique only with its source, may
    be all digits (``/events/2`` is seq 2) and may hold characters a URL cannot carry as is."""
    odd = [("2", "/weird"), ("a b?c#d/e%f", "/weird"), ("2", "https://other.example")]
    with server.client() as c:
        for n in range(3):
            r = post_structured(c, make("filler.made", {"n": n}, id=f"fill-{n}"))
            assert r.status_code == 201, r.text
        for event_id, source in odd:
            r = post_structured(c, make("odd.id", {"n": 0}, id=event_id, source=source))
            assert r.status_code == 201, r.text
            followed = c.get(r.headers["location"])
            assert followed.status_code == 200, (r.headers["location"], followed.text)
            shown = followed.json()["event"]
            assert shown["seq"] == r.json()["seq"]
            assert (shown["id"], shown["source"]) == (event_id, source)


BINARY_CASES = {
    "json": lambda: make(
        "order.placed",
        {"orderId": "o-9", "amount": 5},
        id="b-json",
        subject="Zoë & Max / 100% ",  # needs percent-encoding in a header
        datacontenttype="application/json",
        tenant="acme",
    ),
    "text": lambda: make(
        "note.taken", "line one\nline two", id="b-text", datacontenttype="text/plain"
    ),
    "bytes": lambda: make(
        "blob.stored", b"\x00\xff\x10binary", id="b-bytes", datacontenttype="image/png"
    ),
}


@pytest.mark.parametrize("case", sorted(BINARY_CASES))
def test_binary_event_is_recorded_and_read_back_equal(server: Server, case: str) -> None:
    event = BINARY_CASES[case]()
    with server.client() as c:
        r = post_binary(c, event)
        assert r.status_code == 201, r.text
        assert r.json()["id"] == event.get_id()
        assert_same(event, read_back(c, event.get_id()))


def test_binary_header_values_are_percent_decoded(server: Server) -> None:
    with server.client() as c:
        r = c.post(
            "/events",
            headers={
                "ce-specversion": "1.0",
                "ce-id": "pct-1",
                # the source https://shop.example/a%20b (a URI keeps its own %20): '%' as %25
                "ce-source": "https://shop.example/a%2520b",
                "ce-type": "order.placed",
                "ce-subject": "Zo%C3%AB%20%25",
                "content-type": "application/json",
            },
            content=b'{"orderId": "pct"}',
        )
        assert r.status_code == 201, r.text
        event = c.get("/events/pct-1").json()["event"]
        assert event["subject"] == "Zoë %"
        assert event["source"] == "https://shop.example/a%20b"


def test_answer_says_what_was_triggered_and_nothing_is_dispatched_in_the_request(
    server: Server,
) -> None:
    event = make("order.placed", {"orderId": "o-big", "amount": 500}, id="trig-1")
    with server.client() as c:
        r = post_structured(c, event)
        assert r.status_code == 201, r.text
        triggered = r.json()["triggered"]
        kinds = sorted(t["kind"] for t in triggered)
        assert kinds == ["delivery", "event"]
        derived = next(t for t in triggered if t["kind"] == "event")
        assert derived["rule"] == "ship-on-order"
        assert derived["event"]["type"] == "shipment.requested"
        assert derived["event"]["causationid"] == "trig-1"
        delivery = next(t for t in triggered if t["kind"] == "delivery")
        assert delivery["rule"] == "notify-sales"
        # the webhook's host does not listen: had the request dispatched it, it would have failed
        listed = c.get("/deliveries").json()
        assert [d["status"] for d in listed if d["id"] == delivery["id"]] == ["pending"]


def test_batch_is_recorded_in_order(server: Server) -> None:
    events = [make("order.placed", {"orderId": f"bt-{i}"}, id=f"batch-{i}") for i in range(5)]
    with server.client() as c:
        r = post_batch(c, events)
        assert r.status_code == 201, r.text
        results = r.json()
        assert [x["id"] for x in results] == [e.get_id() for e in events]
        assert all(x["duplicate"] is False for x in results)
        seqs = [x["seq"] for x in results]
        assert seqs == sorted(seqs)
        for e in events:
            assert_same(e, read_back(c, e.get_id()))


def test_batch_with_one_bad_event_records_nothing(server: Server) -> None:
    good = [make("batch.item", {"n": i}, id=f"atomic-{i}") for i in range(3)]
    bad = json.loads(batch_body(good))
    bad[2]["time"] = "2016-10-02 10:00"  # not RFC 3339
    with server.client() as c:
        r = c.post("/events", headers={"Content-Type": BATCH}, content=json.dumps(bad))
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        problem = r.json()
        assert problem["attribute"] == "time"
        assert problem["index"] == 2
        assert c.get("/events", params={"type": "batch.item"}).json() == []


def test_batch_must_be_an_array(server: Server) -> None:
    with server.client() as c:
        r = c.post("/events", headers={"Content-Type": BATCH}, content=b'{"type": "x"}')
        assert r.status_code == 400
        assert r.headers["content-type"].startswith(PROBLEM)


def test_duplicate_answers_200_with_the_existing_seq(server: Server) -> None:
    event = make("order.placed", {"orderId": "dup-1"}, id="dup-1")
    with server.client() as c:
        first = post_structured(c, event)
        assert first.status_code == 201, first.text
        again = post_structured(c, event)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
        assert again.json()["seq"] == first.json()["seq"]
        # the same identity sent in binary mode is the same event too
        third = post_binary(c, event)
        assert third.status_code == 200
        assert third.json()["seq"] == first.json()["seq"]
        assert len(c.get("/events", params={"type": "order.placed"}).json()) == 1
        # a batch that repeats it records the others and reports the duplicate
        other = make("order.placed", {"orderId": "dup-2"}, id="dup-2")
        r = post_batch(c, [event, other])
        assert r.status_code == 201
        assert [x["duplicate"] for x in r.json()] == [True, False]
        assert r.json()[0]["seq"] == first.json()["seq"]


def _problem(r, status: int, attribute: str | None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    if attribute is not None:
        assert problem["attribute"] == attribute
        assert attribute in problem["detail"]
    return problem


STRUCTURED_BAD = {
    "time": {"specversion": "1.0", "id": "x1", "source": "/s", "type": "t.x", "time": "2016-10-02"},
    "type": {"specversion": "1.0", "id": "x2", "source": "/s"},
    "id": {"specversion": "1.0", "source": "/s", "type": "t.x"},
    "source": {"specversion": "1.0", "id": "x3", "type": "t.x"},
    "specversion": {"specversion": "0.3", "id": "x4", "source": "/s", "type": "t.x"},
    "subject": {"specversion": "1.0", "id": "x5", "source": "/s", "type": "t.x", "subject": ""},
}


@pytest.mark.parametrize("attribute", sorted(STRUCTURED_BAD))
def test_bad_structured_event_is_a_400_problem_naming_the_attribute(
    server: Server, attribute: str
) -> None:
    with server.client() as c:
        r = c.post(
            "/events",
            headers={"Content-Type": "application/cloudevents+json"},
            content=json.dumps(STRUCTURED_BAD[attribute]),
        )
        _problem(r, 400, attribute)
        assert c.get("/events").json() == []


def test_an_outside_event_cannot_claim_an_evflow_source(server: Server) -> None:
    forged = make("order.placed", {}, id="forged", source="evflow:rule/x")
    with server.client() as c:
        r = post_structured(c, forged)
        _problem(r, 400, "source")


def test_a_batch_cannot_claim_an_evflow_source_either(server: Server) -> None:
    forged = make("order.placed", {}, id="forged-2", source="evflow:rule/ship-on-order")
    good = make("order.placed", {"orderId": "fine"}, id="fine-1")
    with server.client() as c:
        r = post_batch(c, [good, forged])
        assert r.status_code == 400, (
            "Evflow.emit_batch must refuse evflow: sources as Evflow.emit does"
        )
        problem = _problem(r, 400, "source")
        assert problem["index"] == 1
        assert c.get("/events", params={"type": "order.placed"}).json() == []


def test_malformed_json_is_a_400_problem(server: Server) -> None:
    with server.client() as c:
        r = c.post(
            "/events",
            headers={"Content-Type": "application/cloudevents+json"},
            content=b'{"type": "t.x",',
        )
        _problem(r, 400, None)


def test_bad_binary_event_is_a_400_problem_naming_the_attribute(server: Server) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "bin-bad",
        "ce-source": "/s",
        "ce-type": "t.x",
        "content-type": "application/json",
    }
    with server.client() as c:
        _problem(
            c.post("/events", headers={**headers, "ce-time": "yesterday"}, content=b"{}"),
            400,
            "time",
        )
        missing = {k: v for k, v in headers.items() if k != "ce-id"}
        _problem(c.post("/events", headers=missing, content=b"{}"), 400, "id")
        # JSON declared, not JSON sent
        _problem(c.post("/events", headers=headers, content=b"{nope"), 400, "data")


def test_neither_mode_is_415(server: Server) -> None:
    with server.client() as c:
        r = c.post("/events", headers={"Content-Type": "text/plain"}, content=b"hello")
        _problem(r, 415, None)


def test_body_over_the_limit_is_413_and_the_server_goes_on(server: Server) -> None:
    big = make("big.thing", {"blob": "x" * (2 * 1024 * 1024)}, id="too-big")
    with server.client() as c:
        _problem(post_structured(c, big), 413, None)

        def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(64):
                yield b"y" * 65536

        r = c.post(
            "/events",
            headers={
                "ce-specversion": "1.0",
                "ce-id": "chunked",
                "ce-source": "/s",
                "ce-type": "big.chunked",
                "content-type": "application/octet-stream",
            },
            content=chunks(),
        )
        _problem(r, 413, None)
        assert c.get("/events").json() == []
        ok = post_structured(c, make("small.thing", {"n": 1}, id="small"))
        assert ok.status_code == 201


def test_body_limit_is_configurable(shop) -> None:  # type: ignore[no-untyped-def]
    from tests.serve.server import serve

    with serve(shop, "--max-body", "2000") as s, s.client() as c:
        _problem(post_structured(c, make("t.x", {"blob": "z" * 3000}, id="over")), 413, None)
        assert post_structured(c, make("t.x", {"blob": "z" * 100}, id="under")).status_code == 201
