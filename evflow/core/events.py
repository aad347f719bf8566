"""The event envelope (SPEC §1): CloudEvents 1.0 JSON, validated and completed.

An event is a plain ``dict`` (its CloudEvents JSON object): it is what is stored, printed and
imported, and a dict costs nothing to build on the hot path of ``evflow emit``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from evflow.errors import InvalidEvent

Event = dict[str, Any]

DEFAULT_SOURCE = "evflow:cli"
TYPE_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
#: attributes that the store sets; ignored on input
STORE_ATTRIBUTES = ("seq", "recordedtime")
#: attributes that only evflow sets for derived events, kept as given on import
LINEAGE_ATTRIBUTES = ("causationid", "correlationid", "evflowrule")
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
# UTC times that only need padding to become canonical (the common shape of incoming events)
_UTC_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z")
_CORE = {"specversion", "id", "type", "source", "time", "subject", "datacontenttype", "data"}
#: how deeply data may nest (objects and arrays). One limit for accepting an event and for reading
#: it back: Python's JSON reader gives up near 1,000 levels (inside the envelope, with the caller's
#: frames), so anything accepted here is far from that edge.
MAX_DEPTH = 512
#: Python refuses to turn longer digit strings into ints (CVE-2020-10735); so does evflow, on input
MAX_INT_DIGITS = 4300
#: sources that evflow gives its own events (derived, scheduled, timers): never from outside
RESERVED_SOURCE_PREFIX = "evflow:"


def new_id(now_ns: int | None = None) -> str:
    """A UUIDv7 (RFC 9562) as text: time-ordered, so ids sort roughly by creation."""
    ms = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``: fixed width, so text order is time order.

    The year is always four digits (``0999-…``): strftime's ``%Y`` writes ``999`` on glibc, which
    no RFC 3339 reader (evflow included) can read back."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    try:
        u = dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time out of range once in UTC: {dt.isoformat()}") from None
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond:06d}Z"
    )


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 (``Z`` or an offset); no offset is an error; a date is UTC midnight."""
    value = text.strip()
    if not value:
        raise ValueError("empty time")
    if len(value) == 10:
        try:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    try:
        dt = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"time without a UTC offset: {text!r} (add Z or +HH:MM)")
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time out of range once in UTC (years 1 to 9999): {text!r}") from None


def now_utc() -> datetime:
    return datetime.now(UTC)


def normalize(
    raw: Mapping[str, Any],
    *,
    now: datetime | None = None,
    default_source: str = DEFAULT_SOURCE,
    where: str | None = None,
) -> Event:
    """Validate an incoming event and fill what is missing (SPEC §1).

    ``seq`` and ``recordedtime`` are dropped (the store assigns them); every other attribute is
    kept as given. ``where`` prefixes error messages (``FILE:LINE``).
    """
    if not isinstance(raw, Mapping):
        raise InvalidEvent("event", f"must be a JSON object, got {_json_kind(raw)}", where)
    etype = raw.get("type")
    if not isinstance(etype, str) or not etype:
        raise InvalidEvent("type", "missing or not a string", where)
    if not TYPE_PATTERN.fullmatch(etype):
        raise InvalidEvent("type", f"must match [A-Za-z0-9_.-]+ (got {etype!r})", where)
    data = raw.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidEvent("data", f"must be a JSON object, got {_json_kind(data)}", where)
    specversion = raw.get("specversion", "1.0")
    if specversion != "1.0":
        raise InvalidEvent("specversion", f"must be '1.0' (got {specversion!r})", where)
    eid = raw.get("id")
    if eid is None:
        eid = new_id()
    elif not isinstance(eid, str) or not eid:
        raise InvalidEvent("id", "must be a non-empty string", where)
    source = raw.get("source", default_source)
    if not isinstance(source, str) or not source:
        raise InvalidEvent("source", "must be a non-empty string (a URI-reference)", where)
    when = raw.get("time")
    if when is None:
        stamp = format_time(now or now_utc())
    elif isinstance(when, str) and (utc := _UTC_TIME.fullmatch(when)):
        # already in UTC: validate the date, pad the fraction (no datetime round trip)
        try:
            datetime.fromisoformat(utc.group(1))
        except ValueError:
            raise InvalidEvent("time", f"not an RFC 3339 time: {when!r}", where) from None
        stamp = f"{utc.group(1)}.{(utc.group(2) or '').ljust(6, '0')}Z"
    elif isinstance(when, str):
        try:
            stamp = format_time(parse_time(when))
        except ValueError as exc:
            raise InvalidEvent("time", str(exc), where) from None
    else:
        raise InvalidEvent("time", "must be an RFC 3339 string", where)
    subject = raw.get("subject")
    if subject is not None and not isinstance(subject, str):
        if isinstance(subject, bool) or not isinstance(subject, int | float):
            raise InvalidEvent("subject", "must be a string", where)
        subject = str(subject)
    # these are stored in text columns too: PostgreSQL's text cannot hold NUL at all
    for field, text in (("id", eid), ("source", source), ("subject", subject)):
        if text is not None and "\x00" in text:
            raise InvalidEvent(field, "must not contain NUL (U+0000)", where)
    contenttype = raw.get("datacontenttype", "application/json")
    if contenttype != "application/json":
        raise InvalidEvent("datacontenttype", "only application/json is supported", where)

    event: Event = {
        "specversion": "1.0",
        "id": eid,
        "source": source,
        "type": etype,
        "time": stamp,
    }
    if subject is not None:
        event["subject"] = subject
    event["datacontenttype"] = "application/json"
    for name, value in raw.items():
        if name in _CORE or name in STORE_ATTRIBUTES:
            continue
        if not _EXTENSION_NAME.fullmatch(name):
            raise InvalidEvent(
                name, "unknown attribute (extension names are lowercase letters and digits)", where
            )
        if name in LINEAGE_ATTRIBUTES and (not isinstance(value, str) or "\x00" in value):
            raise InvalidEvent(name, "must be a string (without NUL)", where)
        event[name] = value
    if "correlationid" not in event:
        event["correlationid"] = eid
    for name, value in event.items():
        if type(value) is not str or not value.isascii():
            check_json(value, name, where)
    event["data"] = data
    if data:
        check_json(data, "data", where)
    return event


def check_json(value: Any, field: str, where: str | None = None) -> None:
    """Refuse a value that the log could not store and read back as JSON: text that is not
    Unicode (lone surrogates), NaN or Infinity, an integer of more than 4,300 digits, nesting
    deeper than :data:`MAX_DEPTH`. Raises :class:`InvalidEvent` naming ``field``."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii():
                _check_text(item, field, where)
        elif kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                raise InvalidEvent(
                    field, f"nested deeper than {MAX_DEPTH} levels (evflow's limit)", where
                )
            if kind is dict:
                for key, sub in item.items():
                    if type(key) is str and not key.isascii():
                        _check_text(key, field, where)
                    if type(sub) in _NEEDS_CHECK:
                        stack.append((sub, depth + 1))
            else:
                stack.extend((sub, depth + 1) for sub in item if type(sub) in _NEEDS_CHECK)
        elif kind is float:
            if item != item or item in (_INF, -_INF):
                raise InvalidEvent(field, "holds NaN or Infinity, which JSON cannot hold", where)
        elif kind is int and item.bit_length() > _MAX_INT_BITS:
            raise InvalidEvent(
                field, f"holds an integer of more than {MAX_INT_DIGITS} digits", where
            )


_INF = float("inf")
_MAX_INT_BITS = 14_284  # 10**4300 needs 14,285 bits
_NEEDS_CHECK = frozenset({dict, list, str, float, int})


def _check_text(text: str, field: str, where: str | None) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEvent(
            field,
            f"not valid Unicode text (a lone surrogate U+{ord(text[exc.start]):04X}; invalid"
            " UTF-8 in the input?)",
            where,
        ) from None


def check_outside_source(raw: Mapping[str, Any], where: str | None = None) -> None:
    """An event from outside may not claim an ``evflow:`` source (derived events, schedules,
    timers use them; a forged one would take the identity of the real one). ``evflow:cli``, the
    default source of ``evflow emit``, is not reserved."""
    source = raw.get("source")
    if (
        isinstance(source, str)
        and source.startswith(RESERVED_SOURCE_PREFIX)
        and source != DEFAULT_SOURCE
    ):
        raise InvalidEvent(
            "source",
            f"{source!r}: the evflow: sources are evflow's own (derived and scheduled events);"
            " choose another source",
            where,
        )


# the namespace of content-derived ids (a UUIDv5 namespace of its own)
_CONTENT_NAMESPACE = bytes.fromhex("3b0e5f7c9a1d4c2e8f6b2d4a7c9e1f30")


def content_id(raw: Mapping[str, Any]) -> str:
    """The id of an imported line that has none: a UUIDv5 (RFC 9562) of the line's JSON with
    its keys sorted and no spaces, so the same line gets the same id in any log, and importing
    a file twice records it once. Lines that differ in anything (a ``time``, a data field) are
    different events."""
    import hashlib

    try:
        text = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        return new_id()  # not JSON at all: normalize() says why
    digest = bytearray(hashlib.sha1(_CONTENT_NAMESPACE + text.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_history(raw: Mapping[str, Any]) -> bool:
    """A line of an evflow log's export: it carries the attributes only a log sets."""
    return any(raw.get(name) is not None for name in STORE_ATTRIBUTES)


def to_json(event: Mapping[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


# one decoder for every line: json.loads with an option builds a new one per call
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_json(text: str) -> Any:
    """Strict JSON: Python's parser also takes NaN and Infinity, which no other reader does.

    Input that Python cannot read (nesting deeper than its recursion allows, integers over its
    digit limit) is a :class:`json.JSONDecodeError` like any other malformed JSON."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise json.JSONDecodeError(
            f"nested deeper than {MAX_DEPTH} levels (evflow's limit)", text, 0
        ) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise json.JSONDecodeError(
            f"holds an integer of more than {MAX_INT_DIGITS} digits"
            if "digits" in str(exc)
            else str(exc),
            text,
            0,
        ) from None


def parse_json_object(text: str, what: str = "data") -> dict[str, Any]:
    """Parse JSON that must be an object; errors name ``what`` and the position."""
    try:
        value = parse_json(text)
    except json.JSONDecodeError as exc:
        if exc.pos == 0 and exc.doc not in ("NaN", "Infinity", "-Infinity") and (
            exc.msg.startswith(("nested", "holds"))
        ):
            raise InvalidEvent(what, exc.msg) from None
        where = "" if exc.doc in ("NaN", "Infinity", "-Infinity") else (
            f" (line {exc.lineno}, column {exc.colno})"
        )
        raise InvalidEvent(what, f"malformed JSON: {exc.msg}{where}") from None
    if not isinstance(value, dict):
        raise InvalidEvent(what, f"must be a JSON object, got {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
