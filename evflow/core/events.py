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
from functools import lru_cache
from typing import Any

from evflow.core.text import LazyPattern
from evflow.errors import InvalidEvent

Event = dict[str, Any]

DEFAULT_SOURCE = "evflow:cli"
#: attributes that the store sets; ignored on input
STORE_ATTRIBUTES = ("seq", "recordedtime")
#: attributes that only evflow sets for derived events, kept as given on import
LINEAGE_ATTRIBUTES = ("causationid", "correlationid", "evflowrule")
#: how deeply data may nest (objects and arrays). One limit for accepting an event and for reading
#: it back: Python's JSON reader gives up near 1,000 levels (inside the envelope, with the caller's
#: frames), so anything accepted here is far from that edge.
MAX_DEPTH = 512
#: Python refuses to turn longer digit strings into ints (CVE-2020-10735); so does evflow, on input
MAX_INT_DIGITS = 4300
#: sources that evflow gives its own events (derived, scheduled, timers): never from outside
RESERVED_SOURCE_PREFIX = "evflow:"
#: CloudEvents extension names: lowercase letters and digits (the 20-character limit is a SHOULD)
_EXTENSION_NAME = LazyPattern(r"[a-z0-9]+")
#: RFC 3339 ``date-time`` (section 5.6), nothing more: ``T`` or ``t``, seconds, a ``.`` fraction
_RFC3339 = LazyPattern(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# the characters the CloudEvents String type excludes (controls), and lone surrogates
_NOT_STRING = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_INT32 = range(-(2**31), 2**31)
_CORE = {
    "specversion",
    "id",
    "type",
    "source",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
}
# RFC 3986 URI-reference and URI, as the ABNF of its appendix A (percent-encodings checked)
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
_QUERY = rf"(?:{_PCHAR}|[/?])*"
_HOST = (
    r"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
    r"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
)
_AUTHORITY = rf"(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{{2}})*@)?{_HOST}(?::[0-9]*)?"
_HIER = rf"(?://{_AUTHORITY}(?:/{_PCHAR}*)*|/?(?:{_PCHAR}+(?:/{_PCHAR}*)*)?)"
_NOSCHEME = rf"(?://{_AUTHORITY}(?:/{_PCHAR}*)*|/?(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=@]|%[0-9A-Fa-f]{{2}})+(?:/{_PCHAR}*)*)?)"
_URI = LazyPattern(rf"[A-Za-z][A-Za-z0-9+\-.]*:{_HIER}(?:\?{_QUERY})?(?:#{_QUERY})?")
_RELATIVE_REF = LazyPattern(rf"{_NOSCHEME}(?:\?{_QUERY})?(?:#{_QUERY})?")
#: RFC 2045 media type: type "/" subtype, then parameters
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = LazyPattern(rf"(?s){_TOKEN}/{_TOKEN}(?:\s*;.*)?")
_JSON_MEDIA_TYPE = LazyPattern(r"[^/;]+/(?:[^;]*\+)?json\s*(?:;.*)?", re.IGNORECASE | re.DOTALL)
_BASE64 = LazyPattern(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def is_uri_reference(text: str) -> bool:
    known = _URI_REFERENCES.get(text)
    if known is None:
        known = bool(_URI.fullmatch(text) or _RELATIVE_REF.fullmatch(text))
        if len(_URI_REFERENCES) < 4096 and len(text) <= 512:  # a bounded cache, whatever comes
            _URI_REFERENCES[text] = known
    return known


# the answers for the sources seen so far: an import's events share a few sources, and the
# pattern costs several microseconds per event (issue 16)
_URI_REFERENCES: dict[str, bool] = {}


def is_uri(text: str) -> bool:
    return bool(_URI.fullmatch(text))


def is_json_media_type(media_type: str | None) -> bool:
    """``application/json``, ``text/json``, ``*/*+json``, with or without parameters (absent:
    JSON, as the CloudEvents JSON format says)."""
    return media_type is None or bool(_JSON_MEDIA_TYPE.fullmatch(media_type))


def event_data(event: Mapping[str, Any]) -> Any:
    """The event's data as rules see it: the JSON value, the bytes of ``data_base64``, or None."""
    if "data_base64" in event:
        import base64

        return base64.b64decode(event["data_base64"])
    return event.get("data")


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
    """RFC 3339 in UTC with microseconds and ``Z``: fixed width, so text order is time order
    (an event's own time may carry nanoseconds: :func:`canonical_time`).

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


def canonical_time(text: Any) -> str:
    """An RFC 3339 ``date-time`` as evflow keeps it: the same instant in UTC with ``Z``, and its
    precision up to nanoseconds (6 fraction digits when the text had at most 6, else 9; digits past
    the ninth are dropped). Raises ValueError naming what is wrong."""
    if not isinstance(text, str):
        raise ValueError("must be an RFC 3339 string")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not an RFC 3339 time: {text!r} (expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or"
            " +HH:MM)"
        )
    day, clock, fraction, offset = match.groups()
    fraction = fraction or ""
    if offset in "Zz":
        # already UTC: format_time would write the matched digits (exactly 4-2-2 and 2:2:2),
        # once they name a real day (checked once per day: an import's events share few) and time
        if not (_real_day(day) and clock[:2] < "24" and clock[3:5] < "60" and clock[6:] < "60"):
            raise ValueError(f"not an RFC 3339 time: {text!r} (no such date or time)")
        stamp = f"{day}T{clock}.{fraction[:6].ljust(6, '0')}"
    else:
        try:
            dt = datetime.fromisoformat(f"{day}T{clock}.{fraction[:6].ljust(6, '0')}{offset}")
        except ValueError:
            raise ValueError(f"not an RFC 3339 time: {text!r} (no such date or time)") from None
        try:
            dt = dt.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"time out of range once in UTC (years 1 to 9999): {text!r}") from None
        stamp = format_time(dt)[:-1]
    if len(fraction) > 6:
        stamp += fraction[6:9].ljust(3, "0")
    return stamp + "Z"


@lru_cache(maxsize=4096)
def _real_day(day: str) -> bool:
    try:
        return datetime.fromisoformat(day).year > 0
    except ValueError:
        return False


def _string(name: str, value: Any, where: str | None, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(name, f"must be a string, got {_json_kind(value)}", where)
    if not value and not empty:
        raise InvalidEvent(name, "must not be empty", where)
    if value.isascii() and value.isprintable():  # U+0020..U+007E: nothing _NOT_STRING finds
        return value
    if bad := _NOT_STRING.search(value):
        raise InvalidEvent(
            name, f"must not contain control characters (U+{ord(bad.group()):04X})", where
        )
    return value


def normalize(
    raw: Mapping[str, Any],
    *,
    now: datetime | None = None,
    default_source: str = DEFAULT_SOURCE,
    where: str | None = None,
) -> Event:
    """Validate an incoming CloudEvents 1.0 JSON object and fill what is missing (SPEC §1).

    What the JSON event format allows is kept as it came: an attribute given as null is absent,
    ``data`` is any JSON value or absent, ``data_base64`` binary data. What it forbids is refused
    with one :class:`InvalidEvent` naming the attribute. ``id``, ``source`` and ``time`` are filled
    when missing, ``time`` is kept in UTC (:func:`canonical_time`), ``correlationid`` defaults to
    the id. ``seq`` and ``recordedtime`` are dropped (the store assigns them). ``where`` prefixes
    error messages (``FILE:LINE``).
    """
    if not isinstance(raw, Mapping):
        raise InvalidEvent("event", f"must be a JSON object, got {_json_kind(raw)}", where)
    if None in raw.values():
        raw = {name: value for name, value in raw.items() if value is not None}
    specversion = raw.get("specversion", "1.0")
    if specversion != "1.0":
        raise InvalidEvent("specversion", f"must be '1.0' (got {specversion!r})", where)
    if "type" not in raw:
        raise InvalidEvent("type", "missing", where)
    etype = _string("type", raw["type"], where)
    eid = raw.get("id")
    eid = new_id() if eid is None else _string("id", eid, where)
    source = _string("source", raw.get("source", default_source), where)
    if source != DEFAULT_SOURCE and not is_uri_reference(source):  # emit skips the big pattern
        raise InvalidEvent("source", f"not a URI-reference: {source!r}", where)
    when = raw.get("time")
    if when is None:
        stamp = format_time(now or now_utc())
    else:
        try:
            stamp = canonical_time(when)
        except ValueError as exc:
            raise InvalidEvent("time", str(exc), where) from None

    event: Event = {"specversion": "1.0", "id": eid, "source": source, "type": etype, "time": stamp}
    if "subject" in raw:
        event["subject"] = _string("subject", raw["subject"], where)
    if "datacontenttype" in raw:
        media = _string("datacontenttype", raw["datacontenttype"], where)
        if not _MEDIA_TYPE.fullmatch(media):
            raise InvalidEvent("datacontenttype", f"not a media type: {media!r}", where)
        event["datacontenttype"] = media
    if "dataschema" in raw:
        schema = _string("dataschema", raw["dataschema"], where)
        if not is_uri(schema):
            raise InvalidEvent("dataschema", f"not an absolute URI: {schema!r}", where)
        event["dataschema"] = schema
    for name, value in raw.items():
        if name in _CORE or name in STORE_ATTRIBUTES:
            continue
        if not _EXTENSION_NAME.fullmatch(name):
            raise InvalidEvent(
                name, "unknown attribute (extension names are lowercase letters and digits)", where
            )
        if name in LINEAGE_ATTRIBUTES:
            _string(name, value, where)
        elif isinstance(value, str):
            _string(name, value, where, empty=True)
        elif isinstance(value, bool):
            pass
        elif isinstance(value, int):
            if value not in _INT32:
                raise InvalidEvent(name, f"integer out of the int32 range: {value}", where)
        else:
            raise InvalidEvent(
                name,
                f"an extension value is a string, a boolean or an int32 integer, got"
                f" {_json_kind(value)}",
                where,
            )
        event[name] = value
    if "correlationid" not in event:
        event["correlationid"] = eid
    if "data_base64" in raw:
        if "data" in raw:
            raise InvalidEvent("data_base64", "an event has data or data_base64, not both", where)
        encoded = raw["data_base64"]
        if not isinstance(encoded, str) or not _BASE64.fullmatch(encoded):
            raise InvalidEvent("data_base64", "not base64 text (RFC 4648, padded)", where)
        event["data_base64"] = encoded
    elif "data" in raw:
        event["data"] = raw["data"]
    for name, value in event.items():
        if type(value) is not str or not value.isascii():
            check_json(value, name, where)
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
                    elif type(sub) not in _PLAIN:
                        _check_kind(sub, field, where)
            else:
                for sub in item:
                    if type(sub) in _NEEDS_CHECK:
                        stack.append((sub, depth + 1))
                    elif type(sub) not in _PLAIN:
                        _check_kind(sub, field, where)
        elif kind is float:
            if item != item or item in (_INF, -_INF):
                raise InvalidEvent(field, "holds NaN or Infinity, which JSON cannot hold", where)
        elif kind is int:
            if item.bit_length() > _MAX_INT_BITS:
                raise InvalidEvent(
                    field, f"holds an integer of more than {MAX_INT_DIGITS} digits", where
                )
        elif kind not in _PLAIN:
            _check_kind(item, field, where)


def _check_kind(value: Any, field: str, where: str | None) -> None:
    """Refuse a value that is no JSON value (a UUID, an Enum: orjson would write them), as json
    does; a subclass of a JSON type (an IntEnum, a str subclass) is written as its base."""
    if not isinstance(value, _JSON_TYPES):
        raise InvalidEvent(
            field, f"holds a Python {type(value).__name__}, which JSON cannot hold", where
        )


_INF = float("inf")
_MAX_INT_BITS = 14_284  # 10**4300 needs 14,285 bits
_NEEDS_CHECK = frozenset({dict, list, str, float, int})
_PLAIN = frozenset({bool, type(None)})
_JSON_TYPES = (str, int, float, dict, list, tuple)  # and their subclasses; bool is an int


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
    if not isinstance(raw, Mapping):
        return  # not an object at all: normalize() says so
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
