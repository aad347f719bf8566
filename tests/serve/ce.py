"""CloudEvents made and read by the official SDK (the oracle), and HTTP helpers around them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

FORMAT = JSONFormat()
BATCH = "application/cloudevents-batch+json"
#: attributes that evflow adds to what it records
EVFLOW_ADDED = {"seq", "recordedtime", "correlationid"}


def make(etype: str, data: Any = None, **attributes: Any) -> CloudEvent:
    attrs = {
        "type": etype,
        "source": attributes.pop("source", "https://shop.example/orders"),
        "time": attributes.pop("time", datetime(2026, 11, 30, 9, 15, 0, 123456, tzinfo=UTC)),
        **attributes,
    }
    return CloudEvent(attrs, data)


def post_structured(client: httpx.Client, event: CloudEvent) -> httpx.Response:
    message = to_structured(event, FORMAT)
    return client.post("/events", headers=message.headers, content=message.body)


def post_binary(client: httpx.Client, event: CloudEvent) -> httpx.Response:
    message = to_binary(event, FORMAT)
    return client.post("/events", headers=message.headers, content=message.body)


def batch_body(events: list[CloudEvent]) -> bytes:
    """The JSON batch format: an array of structured events, each written by the SDK."""
    return b"[" + b",".join(FORMAT.write(e) for e in events) + b"]"


def post_batch(client: httpx.Client, events: list[CloudEvent]) -> httpx.Response:
    return client.post("/events", headers={"Content-Type": BATCH}, content=batch_body(events))


def read_back(client: httpx.Client, event_id: str) -> CloudEvent:
    """``GET /events/{id}``, parsed by the SDK."""
    r = client.get(f"/events/{event_id}")
    assert r.status_code == 200, r.text
    return FORMAT.read(None, json.dumps(r.json()["event"]))


def assert_same(sent: CloudEvent, back: CloudEvent) -> None:
    """Equal attribute by attribute (evflow's own additions aside) and in data."""
    got = {k: v for k, v in back.get_attributes().items() if k not in EVFLOW_ADDED}
    expected = sent.get_attributes()
    # the JSON format implies application/json when it is absent: saying so is no change
    if (
        "datacontenttype" not in expected
        and sent.get_data() is not None
        and got.get("datacontenttype") == "application/json"
    ):
        del got["datacontenttype"]
    assert got == expected
    assert back.get_data() == sent.get_data()
