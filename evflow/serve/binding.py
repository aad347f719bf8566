"""The CloudEvents HTTP binding: a request's headers and body -> the events it carries.

Structured mode (``application/cloudevents+json``: the event is the body), binary mode (``ce-*``
headers are the attributes, percent-decoded; the body is the data, ``Content-Type`` its
``datacontenttype``) and batch mode (``application/cloudevents-batch+json``: a JSON array of
structured events). What comes out are CloudEvents JSON objects: the library validates them, as it
validates what ``emit`` and ``import`` read, so there is one set of envelope rules.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from evflow.errors import EvflowError, InvalidEvent

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
#: what the HTTP binding requires of every event (``emit`` fills some of them in; a producer
#: over HTTP must send them, or its retries would not be recognized as the same event)
REQUIRED = ("specversion", "id", "source", "type")


class UnsupportedMedia(EvflowError):
    """A request in none of the binding's three modes."""


class BadEvent(InvalidEvent):
    """An invalid event, with its position in a batch (``index``) when it came in one."""

    def __init__(self, field: str, problem: str, index: int | None = None) -> None:
        super().__init__(field, problem)
        self.index = index


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """``application/json``, ``text/json`` and every ``*/*+json``, parameters aside."""
    media = media_type(content_type)
    return media in ("application/json", "text/json") or media.endswith("+json")


def decode(headers: Mapping[str, str], body: bytes) -> tuple[str, list[dict[str, Any]]]:
    """``(mode, events)``: ``mode`` is ``structured``, ``binary`` or ``batch``.

    ``headers`` has lowercase names. Raises :class:`BadEvent` (400) or
    :class:`UnsupportedMedia` (415).
    """
    media = media_type(headers.get("content-type"))
    if media == STRUCTURED:
        return "structured", [_required(_object(_json(body, "event"), None), None)]
    if media == BATCH:
        items = _json(body, "batch")
        if not isinstance(items, list):
            raise BadEvent("batch", "must be a JSON array of events")
        return "batch", [_required(_object(item, i), i) for i, item in enumerate(items)]
    if any(name.startswith("ce-") for name in headers):
        return "binary", [_required(_binary(headers, body), None)]
    raise UnsupportedMedia(
        f"Content-Type {media or '(none)'} is none of the CloudEvents HTTP modes: send "
        f"{STRUCTURED}, {BATCH}, or the attributes as ce-* headers (binary mode)"
    )


def _json(body: bytes, what: str) -> Any:
    from evflow.core.events import parse_json

    try:
        return parse_json(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadEvent(what, "the body is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = (
            f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else "nested too deeply"
        )
        raise BadEvent(what, f"malformed JSON: {detail}") from None


def _object(value: Any, index: int | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadEvent("event", "must be a JSON object", index)
    return value


def _required(event: dict[str, Any], index: int | None) -> dict[str, Any]:
    for name in REQUIRED:
        if event.get(name) is None:
            raise BadEvent(name, "missing (required by CloudEvents)", index)
    return event


def _header_text(value: str) -> str:
    """A header value percent-decoded (binding §3.1.3.2) as UTF-8."""
    try:
        raw = value.encode("latin-1").decode("utf-8")  # a client that sent UTF-8 bytes as-is
    except UnicodeError:
        raw = value
    return unquote(raw, errors="strict")


def _binary(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for name, value in headers.items():
        if name.startswith("ce-") and len(name) > 3:
            attribute = name[3:]
            if attribute in ("data", "data_base64"):
                raise BadEvent(attribute, "is the body in binary mode, not a ce- header")
            try:
                event[attribute] = _header_text(value)
            except UnicodeDecodeError:
                raise BadEvent(attribute, "percent-encoded bytes that are not UTF-8") from None
    content_type = headers.get("content-type")
    if content_type:
        event["datacontenttype"] = content_type
    if not body:
        return event
    # without a media type: JSON when it parses (as the CloudEvents SDK reads it), else text,
    # else bytes
    if content_type is None or is_json(content_type):
        try:
            event["data"] = _json(body, "data")
            return event
        except BadEvent as exc:
            if content_type is not None:
                raise BadEvent("data", exc.problem) from None
    if content_type is None or media_type(content_type).startswith("text/"):
        try:
            event["data"] = body.decode("utf-8")
            return event
        except UnicodeDecodeError:
            pass
    event["data_base64"] = base64.b64encode(body).decode("ascii")
    return event
