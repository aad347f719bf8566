"""How rows of the log's tables become values and back: one column list per table, one decoder.

Event bodies are the compact JSON evflow itself wrote; decoding them is most of a replay, so the
decoder calls the C scanner directly and the encoders are built once, not once per call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from evflow.core.events import Event
from evflow.core.records import Delivery
from evflow.errors import StorageUnavailable

EVENT_COLUMNS = "seq, recordedtime, body"
INSERT_EVENT = (
    "INSERT INTO events (seq, id, source, type, subject, time, recordedtime, causationid,"
    " correlationid, rule, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
DELIVERY_COLUMNS = (
    "id, event_seq, event_id, rule, action, kind, status, attempts, next_attempt_at, last_error,"
    " created_at, updated_at, lease_owner, lease_until"
)
CHECKPOINT_COLUMNS = "name, position, definition, updated_at"

# one encoder for every append: json.dumps with options builds a new one per call
encode_event = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(text: str) -> Any:
    """json.loads for the compact JSON evflow itself wrote (no surrounding whitespace): the C
    scanner straight away, skipping json.loads' Python-level checks (a third of a replay)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the usual error
    return value if end == len(text) else json.loads(text)


def event_from_row(seq: int, recorded: str, body: str | bytes) -> Event:
    """The event of an ``events`` row (:data:`EVENT_COLUMNS`), with its store attributes."""
    if type(body) is bytes:
        try:
            body = body.decode()
        except UnicodeDecodeError:  # what reading it as text would have said (exit 4)
            raise StorageUnavailable(
                f"event seq {seq}: its stored body is not UTF-8 text (the database is damaged,"
                " or another program wrote it)"
            ) from None
    try:  # loads() inlined: this is once per event of every replay
        event, end = _scan(body, 0)
    except StopIteration:
        event = end = None
    if end != len(body):
        event = json.loads(body)  # raises the usual error, or reads what the scanner did not
    event["seq"] = int(seq)
    event["recordedtime"] = recorded
    return event


EventDecoder = Callable[[int, str, "str | bytes"], Event]

BULK = 1000  # rows from which orjson pays for its import (~11-25 ms)


def bulk_decoder(rows: int) -> EventDecoder:
    """:func:`event_from_row` for reading ``rows`` events at once (a replay's batch): orjson,
    where it reads the same values (:func:`evflow.core.jsontext.read`), for a batch worth its
    import, which stays off ``emit``'s path. It also takes the body as UTF-8 bytes."""
    if rows < BULK:
        return event_from_row
    from evflow.core.jsontext import read

    def decode(seq: int, recorded: str, body: str | bytes) -> Event:
        try:
            raw = body if type(body) is bytes else body.encode()  # type: ignore[union-attr]
        except UnicodeEncodeError:  # a lone surrogate: json's to read
            return event_from_row(seq, recorded, body)
        event = read(raw)
        if type(event) is not dict:  # NOT_READ (or not an object): json says what it is
            return event_from_row(seq, recorded, body)
        event["seq"] = int(seq)
        event["recordedtime"] = recorded
        return event

    return decode


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    """The delivery of a ``deliveries`` row (:data:`DELIVERY_COLUMNS`)."""
    return Delivery(*row)


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _make_dumps() -> Callable[[Any], str]:
    """Compact JSON text, as json.dumps(ensure_ascii=False, separators=(",", ":")), with the C
    encoder built once rather than once per call as json.dumps does."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    iterencode = make(
        None, _not_json, encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda value: "".join(iterencode(value, 0))


#: a snapshot state as stored (compact JSON)
dump_state = _make_dumps()
