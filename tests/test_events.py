from __future__ import annotations

import pytest

from evflow.core.events import format_time, new_id, normalize, parse_json_object, parse_time
from evflow.errors import InvalidEvent


def test_defaults_are_filled() -> None:
    e = normalize({"type": "order.placed", "data": {"a": 1}})
    assert e["specversion"] == "1.0"
    assert e["source"] == "evflow:cli"
    assert "datacontenttype" not in e  # kept as it came: JSON is what an absent one means
    assert e["time"].endswith("Z") and len(e["time"]) == 27
    assert e["correlationid"] == e["id"]
    assert e["id"][14] == "7"  # UUIDv7


def test_store_attributes_are_ignored_and_others_kept() -> None:
    e = normalize(
        {
            "type": "a",
            "seq": 99,
            "recordedtime": "x",
            "id": "i",
            "source": "s",
            "subject": "u1",
            "causationid": "c",
            "correlationid": "r",
            "traceparent": "t",
        }
    )
    assert "seq" not in e and "recordedtime" not in e
    assert (e["id"], e["source"], e["subject"], e["causationid"], e["correlationid"]) == (
        "i",
        "s",
        "u1",
        "c",
        "r",
    )
    assert e["traceparent"] == "t"


def test_time_is_stored_in_utc() -> None:
    e = normalize({"type": "a", "time": "2016-10-01T00:00:00+09:00"})
    assert e["time"] == "2016-09-30T15:00:00.000000Z"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"data": {}}, "type"),
        ({"type": ""}, "type"),
        ({"type": "a", "data": [1], "data_base64": "AA=="}, "data_base64"),
        ({"type": "a", "time": "yesterday"}, "time"),
        ({"type": "a", "time": "2020-01-01T00:00:00"}, "time"),
        ({"type": "a", "specversion": "0.3"}, "specversion"),
        ({"type": "a", "id": ""}, "id"),
        ({"type": "a", "Bad-Ext": 1}, "Bad-Ext"),
    ],
)
def test_invalid_events_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        normalize(raw, where="f.jsonl:3")
    assert info.value.field == field
    assert str(info.value).startswith(f"f.jsonl:3: {field}: ")


def test_ids_are_time_ordered_and_unique() -> None:
    ids = [new_id(now_ns=1_700_000_000_000_000_000 + i * 1_000_000) for i in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100


def test_time_round_trip() -> None:
    assert format_time(parse_time("2020-02-03T04:05:06.5-01:00")) == "2020-02-03T05:05:06.500000Z"
    assert format_time(parse_time("2020-02-03")) == "2020-02-03T00:00:00.000000Z"


def test_parse_json_object_errors() -> None:
    with pytest.raises(InvalidEvent, match="malformed JSON"):
        parse_json_object("{x")
    with pytest.raises(InvalidEvent, match="got an array"):
        parse_json_object("[]")


def test_utc_times_are_padded_and_still_validated() -> None:
    assert normalize({"type": "a", "time": "2020-01-01T00:00:00Z"})["time"] == (
        "2020-01-01T00:00:00.000000Z"
    )
    assert normalize({"type": "a", "time": "2020-01-01T00:00:00.5Z"})["time"] == (
        "2020-01-01T00:00:00.500000Z"
    )
    with pytest.raises(InvalidEvent, match="time"):
        normalize({"type": "a", "time": "2020-02-30T00:00:00Z"})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"type": "a", "subject": "a\x00b"}, "subject"),
        ({"type": "a", "id": "x\x00"}, "id"),
        ({"type": "a", "source": "s\x00"}, "source"),
        ({"type": "a", "causationid": {"a": 1}}, "causationid"),
        ({"type": "a", "evflowrule": 3}, "evflowrule"),
    ],
)
def test_values_no_backend_can_store_are_refused(raw: dict, field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        normalize(raw)
    assert info.value.field == field


def _canonical_or_error(text: str) -> str:
    from evflow.core.events import canonical_time

    try:
        return canonical_time(text)
    except ValueError:
        return "error"


def test_a_utc_time_is_checked_as_its_plus_zero_spelling_is() -> None:
    """``Z`` times take a fast path (the digits as they are, the day's check cached); ``+00:00``
    goes through datetime: every date and time, real or not, gets the same answer from both."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    two = st.integers(0, 99).map(lambda n: f"{n:02d}")
    year = st.sampled_from(["0000", "0001", "1900", "2000", "2016", "2023", "2024", "9999"])
    fraction = st.sampled_from(["", ".5", ".123456", ".1234567891"])

    @settings(max_examples=3000, deadline=None)
    @given(year, two, two, two, two, two, fraction)
    def check(y: str, mo: str, d: str, h: str, mi: str, s: str, frac: str) -> None:
        text = f"{y}-{mo}-{d}T{h}:{mi}:{s}{frac}"
        assert _canonical_or_error(text + "Z") == _canonical_or_error(text + "+00:00")

    check()
