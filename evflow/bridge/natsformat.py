"""The NATS message format of the bridge, without nats-py: subjects, message ids, headers.

Out, an event is a structured-mode CloudEvents message on ``<prefix>.<type>`` (every type has a
subject: :func:`subject_for`). In, a message is structured or binary CloudEvents (NATS protocol
binding §3.1: ``ce-`` headers percent-decoded, the payload as its content type says), or plain
JSON data (:func:`event_from_message`). Split from :mod:`evflow.bridge.nats`, which runs bridges.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from evflow.core.events import Event, is_json_media_type, normalize, parse_json, to_json
from evflow.errors import InvalidEvent

ORIGIN_HEADER = "Evflow-Origin"
SEQ_HEADER = "Evflow-Seq"
MSG_ID_HEADER = "Nats-Msg-Id"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
MAX_PLAIN_MSG_ID = 200
TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")



def subject_for(prefix: str, event_type: str) -> str:
    """``<prefix>.<type>``: a type whose dot-separated tokens are all letters, digits, ``-`` and
    ``_`` is its own subject (``order.placed``). Any other token is percent-encoded (UTF-8 bytes
    outside those characters as ``%XX``; an empty token as ``%``), so every type evflow accepts has
    a valid subject of its own (``order..placed`` -> ``order.%.placed``, ``a b`` -> ``a%20b``)."""
    tokens = event_type.split(".")
    return ".".join([prefix, *(t if TOKEN.fullmatch(t) else _escape_token(t) for t in tokens)])


def _escape_token(token: str) -> str:
    if not token:
        return "%"
    return "".join(
        chr(b) if chr(b).isascii() and TOKEN.fullmatch(chr(b)) else f"%{b:02X}"
        for b in token.encode("utf-8")
    )


def header_value(name: str, value: str) -> str:
    """A ``ce-`` header's attribute value (NATS binding §3.1.3.2): a double-quoted string
    unquoted, then one round of percent-decoding; bytes that are not UTF-8 are refused."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    if "%" not in value:
        return value
    from urllib.parse import unquote_to_bytes

    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(name, f"percent-encoding is not UTF-8: {value!r}") from None


def _payload_data(payload: bytes, media_type: str | None) -> dict[str, Any]:
    """A binary-mode payload as ``data`` (JSON, or text) or ``data_base64`` (other bytes), as its
    content type says; an empty payload is no data."""
    if not payload:
        return {}
    if is_json_media_type(media_type):
        try:
            return {"data": parse_json(payload.decode("utf-8"))}
        except (ValueError, UnicodeDecodeError) as exc:
            if media_type is not None:
                raise InvalidEvent("message", f"malformed JSON ({media_type}): {exc}") from None
    try:
        return {"data": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"data_base64": base64.b64encode(payload).decode("ascii")}


def message_id(source: str, event_id: str) -> str:
    """The ``Nats-Msg-Id`` of an event: ``<source>/<id>``, or a hash when that would be unsafe.

    Plain when the id holds no ``/`` (so the text splits back unambiguously at its last ``/``) and
    the whole is printable ASCII without spaces, at most 200 characters; otherwise
    ``sha256-<hex of source + "\\n" + id>`` (never contains a ``/``, so the forms cannot collide).
    """
    plain = f"{source}/{event_id}"
    if "/" not in event_id and len(plain) <= MAX_PLAIN_MSG_ID and _PRINTABLE.fullmatch(plain):
        return plain
    digest = hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()
    return f"sha256-{digest}"


def encode(event: Event, origin: str) -> tuple[bytes, dict[str, str]]:
    """An event as a structured-mode CloudEvents message: JSON payload and headers."""
    headers = {
        MSG_ID_HEADER: message_id(event["source"], event["id"]),
        ORIGIN_HEADER: origin,
        SEQ_HEADER: str(event["seq"]),
        "Content-Type": CONTENT_TYPE,
    }
    return to_json(event).encode(), headers


def event_from_message(
    subject: str,
    payload: bytes,
    headers: dict[str, str] | None,
    *,
    prefix: str,
    stream: str,
    stream_seq: int,
    timestamp: str | None,
) -> Event:
    """A received message as a normalized event; raises :class:`InvalidEvent` with the reason.

    - structured CloudEvents (a JSON object with ``specversion``): taken as is;
    - binary CloudEvents (``ce-specversion`` header): attributes from the ``ce-*`` headers
      (percent-decoded, NATS binding §3.1.3.2); the payload is ``data`` as its content type
      (``ce-datacontenttype``, else ``Content-Type``) says: JSON parsed, other text as a string,
      other bytes as ``data_base64``, nothing as no data;
    - any other JSON object is ``data``: ``type`` is the subject after ``<prefix>.`` (the whole
      subject when it is outside the prefix), ``source`` ``nats:<subject>``, ``time`` the
      message's JetStream timestamp.

    An event without an ``id`` gets ``Nats-Msg-Id`` when the publisher set one, else
    ``<stream>:<stream seq>:<timestamp>``: the same message redelivered gets the same id, so it is
    appended once.
    """
    headers = headers or {}
    ce_headers = {k.lower(): v for k, v in headers.items() if k.lower().startswith("ce-")}
    if "ce-specversion" in ce_headers:
        # binary mode: attributes in the headers, the payload is the data as its type says
        raw: dict[str, Any] = {k[3:]: header_value(k, v) for k, v in ce_headers.items()}
        media = raw.get("datacontenttype") or next(
            (v for k, v in headers.items() if k.lower() == "content-type"), None
        )
        if media is not None:
            raw["datacontenttype"] = media
        raw.update(_payload_data(payload, media))
        raw.setdefault("source", f"nats:{subject}")
        if "id" not in raw:
            raw["id"] = headers.get(MSG_ID_HEADER) or f"{stream}:{stream_seq}:{timestamp or ''}"
        return normalize(raw)
    try:
        # strict JSON (no NaN), deep nesting and huge integers refused like any malformed JSON
        body = parse_json(payload.decode("utf-8")) if payload.strip() else {}
    except UnicodeDecodeError as exc:
        raise InvalidEvent("message", f"not UTF-8 text (byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent("message", f"malformed JSON: {exc}") from None
    if isinstance(body, dict) and "specversion" in body:
        raw = dict(body)
    else:
        if not isinstance(body, dict):
            raise InvalidEvent("message", "must be a JSON object (CloudEvents or event data)")
        head = prefix + "."
        raw = {"type": subject[len(head) :] if subject.startswith(head) else subject, "data": body}
        if timestamp is not None:
            raw["time"] = timestamp
    raw.setdefault("source", f"nats:{subject}")
    if "id" not in raw:
        raw["id"] = headers.get(MSG_ID_HEADER) or f"{stream}:{stream_seq}:{timestamp or ''}"
    return normalize(raw)
