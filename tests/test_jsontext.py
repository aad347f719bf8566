"""The import's JSON writer (orjson) against the standard library's: the same values always, the
same text but for the spelling of floats under 1e-4, and json's errors where orjson would write
something json refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evflow.core.events import check_json
from evflow.core.jsontext import dumps_checked
from evflow.errors import EvflowError
from evflow.store.rows import BULK, bulk_decoder, encode_event, event_from_row, loads

_floats = st.floats(allow_nan=False, allow_infinity=False)
_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _floats | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _small_floats(value: Any) -> bool:
    if isinstance(value, float):
        return value != 0 and abs(value) < 1e-4
    if isinstance(value, dict):
        return any(_small_floats(v) for v in value.values())
    if isinstance(value, list):
        return any(_small_floats(v) for v in value)
    return False


@settings(max_examples=2000, deadline=None)
@given(_values)
def test_the_same_values_and_text_as_the_standard_library(value: Any) -> None:
    try:
        check_json(value, "data")
    except Exception:  # noqa: BLE001 - lone surrogates: not a checked value
        return
    text = dumps_checked(value)
    assert loads(text) == value
    assert json.loads(text) == value
    if not _small_floats(value):
        assert text == encode_event(value)


def test_floats_under_1e_4_are_spelled_in_full_and_read_back_the_same() -> None:
    for x in (1e-05, -6.389814116186164e-05, 5e-324, 1e-300):
        assert float(dumps_checked(x)) == x
    assert dumps_checked({"a": 1e-05}) == '{"a":0.00001}'
    assert encode_event({"a": 1e-05}) == '{"a":1e-05}'


class _Name(str):
    pass


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, 10**4000, {"n": _Name("x")}, [_Name("y")]],
    ids=["u64+1", "i64-1", "4000 digits", "str subclass in a dict", "str subclass in a list"],
)
def test_what_orjson_refuses_is_written_by_json(value: Any) -> None:
    assert dumps_checked(value) == encode_event(value)


def test_what_json_refuses_still_raises() -> None:
    import datetime

    with pytest.raises(TypeError):  # orjson would write it as text
        dumps_checked({"when": datetime.datetime(2026, 1, 1)})


def test_values_json_cannot_hold_are_refused_before_orjson_could_write_them(tmp_path: Any) -> None:
    """orjson writes UUIDs and Enums; json refuses them, and so does evflow's check, on every
    path (an import through the library, whose events orjson writes, included)."""
    import enum
    import uuid

    from evflow import Evflow
    from evflow.errors import InvalidEvent

    class Colour(enum.Enum):
        RED = 1

    (tmp_path / "no-rules").mkdir()
    flow = Evflow(str(tmp_path / "log.db"), rules=str(tmp_path / "no-rules"))
    for bad in (uuid.UUID(int=1), Colour.RED, [1, uuid.UUID(int=2)]):
        lines = [("api:1", {"type": "t", "id": "x", "data": {"v": bad}})]
        with pytest.raises(InvalidEvent, match="which JSON cannot hold"):
            flow.import_events(lambda lines=lines: lines, chunk=10)
        with pytest.raises(InvalidEvent, match="which JSON cannot hold"):
            check_json({"v": bad}, "data")
    assert flow.last_seq() == 0


# -- reading event bodies (a replay's batch: rows.bulk_decoder) --------------------------------

_bulk = bulk_decoder(BULK)


def _decoded(decode: Any, body: str | bytes) -> str:
    """What a decoder answers, as text that tells 1 from 1.0 and True (or its error's type)."""
    try:
        return repr(decode(7, "2026-01-01T00:00:00Z", body))
    except (ValueError, TypeError, RecursionError, EvflowError) as exc:
        # json's, not an object, or bytes that are not UTF-8 (a storage error)
        named = type(exc).__name__
        return f"{named}: {exc}" if isinstance(exc, EvflowError) else named


@settings(max_examples=1000, deadline=None)
@given(_values, st.booleans())
def test_a_batch_reads_bodies_as_json_does(value: Any, ascii_only: bool) -> None:
    """orjson reads a body where it agrees with json (big integers, floats, escapes, surrogate
    escapes included); elsewhere json reads it, with its own error."""
    body = json.dumps({"id": "e", "type": "t", "data": value}, ensure_ascii=ascii_only)
    oracle = _decoded(event_from_row, body)
    assert _decoded(_bulk, body) == oracle
    try:
        raw = body.encode()
    except UnicodeEncodeError:  # a lone surrogate written as itself: no UTF-8 bytes
        return
    assert _decoded(_bulk, raw) == oracle


@pytest.mark.parametrize(
    "body",
    [
        '{"n":12345678901234567890123}',  # beyond 64 bits: json keeps it exact
        '{"n":-9223372036854775809}',
        '{"n":1e400}',  # orjson refuses, json reads inf
        '{"n":NaN}',
        '{"s":"\\ud800"}',
        '{"n":1} x',
        "[1,2]",
        '{"a":' * 1100 + "1" + "}" * 1100,
        b'{"s":"\xff"}',
        "\ufeff{}",
    ],
    ids=[
        "big",
        "i64-1",
        "1e400",
        "NaN",
        "surrogate",
        "trailing",
        "array",
        "deep",
        "bad utf-8",
        "bom",
    ],
)
def test_a_batch_reads_edge_bodies_as_json_does(body: str | bytes) -> None:
    assert _decoded(_bulk, body) == _decoded(event_from_row, body)


def test_a_small_batch_reads_with_json() -> None:
    """orjson's import is paid for a batch worth it: a query catching up a few events does not."""
    assert bulk_decoder(BULK - 1) is event_from_row
    assert _bulk is not event_from_row
