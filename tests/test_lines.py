"""An import reads its lines with orjson where orjson reads the same values as json, and with
json otherwise (evflow.core.lines): the values and the problems reported must be json's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evflow.core import lines
from evflow.core.jsontext import NOT_READ
from evflow.errors import InvalidEvent


def _as_json(where: str, raw: bytes) -> list[tuple[str, Any]]:
    """What parse_line answers when every line goes through json (the oracle)."""
    saved = lines.read
    lines.read = lambda _: NOT_READ  # orjson reads no line: json reads it
    try:
        return lines.parse_line(where, raw)
    finally:
        lines.read = saved


def _same(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> bool:
    """The same pairs, values of the same types (repr tells 1 from 1.0 and True, and -0.0
    from 0.0, and writes floats exactly), and the same problems."""

    def norm(items: list[tuple[str, Any]]) -> list[tuple[str, str]]:
        return [(w, str(v) if isinstance(v, InvalidEvent) else repr(v)) for w, v in items]

    return norm(a) == norm(b)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.text(alphabet=st.characters(categories=["Cs", "Cc", "Lo"])),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.sampled_from(["", " ", "\n", "\r\n", "\t"]), st.booleans())
def test_lines_read_as_json_reads_them(value: Any, space: str, ascii_only: bool) -> None:
    """Any JSON value, written with or without escapes (\\ud800 escapes included)."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    raw = (space + text + space).encode("utf-8", "surrogatepass")
    assert _same(lines.parse_line("f:1", raw), _as_json("f:1", raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 123456789012345678901234567890}',  # beyond 64 bits: exact, as json reads it
        b'{"n": -9223372036854775809}',
        b'{"n": 18446744073709551615}',
        b'{"n": 9223372036854775807, "m": -9223372036854775808}',
        b'{"x": 1e400}',  # json: inf (check_json refuses it later); orjson refuses
        b'{"x": NaN}',
        b'{"s": "\\ud800"}',  # a lone surrogate: json reads it, check_json names it
        b'\xef\xbb\xbf{"a": 1}',  # a byte order mark
        b'{"a": 1, "a": 2}',
        b'{"a": "\xff"}',  # not UTF-8
        b'{"a": "tab\there"}',  # a raw control character in a string
        b"   \n",
        b"\x0c\n",
        b"[]",
        b'[{"a": 1}, 2]',
        b'{"a": 1} {"b": 2}',
        b"[" * 600 + b"]" * 600,  # deep: json reads it (orjson may refuse past 1,024)
        b"[" * 1100 + b"]" * 1100,
        b'{"a": 0.1, "b": -0.0, "c": 1E2, "d": 5e-324, "e": 1.7976931348623157e308}',
    ],
)
def test_edge_lines_read_as_json_reads_them(raw: bytes) -> None:
    assert _same(lines.parse_line("f:1", raw), _as_json("f:1", raw))
