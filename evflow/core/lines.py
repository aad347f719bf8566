"""One line of an import's input (JSON lines) as the events it holds, or its problem."""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

import orjson

from evflow.core.events import parse_json
from evflow.errors import InvalidEvent

# orjson reads a line ~3 times faster than json, with the same values, except where it reads
# an integer beyond 64 bits as a float (json keeps it exact) or refuses what json reads (nesting
# past 1,024 levels, which json may refuse with another message). Such a line, or one orjson
# refuses at all (malformed, not UTF-8, a lone surrogate, NaN...), is read by json, which says
# what is wrong as it always did. A big integer needs 19 digits in a row: every digit becomes
# "0" (anything else a space), and 19 of those are looked for.
_DIGITS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_NUMBER = b"0" * 19
_NESTING = 512  # opening brackets past which json reads the line


def parse_line(where: str, raw: bytes) -> list[tuple[str, Any]]:
    """The ``(where, value)`` pairs of one line: none for a blank line, one for an object (or
    its :class:`InvalidEvent`: not UTF-8, malformed JSON), one per item for a JSON array (a
    CloudEvents batch, ``application/cloudevents-batch+json``, named ``where[1]``...)."""
    value: Any = _NOT_READ
    if _LONG_NUMBER not in raw.translate(_DIGITS) and (
        len(raw) < _NESTING or raw.count(b"[") + raw.count(b"{") < _NESTING
    ):
        # refused: json says what is wrong (or reads it: a lone surrogate, see check_json)
        with suppress(orjson.JSONDecodeError):
            value = orjson.loads(raw)
    if value is _NOT_READ:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8 text (byte {exc.start + 1})"
            return [(where, InvalidEvent("line", problem, where))]
        if not line.strip():
            return []
        try:
            value = parse_json(line)
        except json.JSONDecodeError as exc:
            problem = f"malformed JSON: {exc.msg} (column {exc.colno})"
            return [(where, InvalidEvent("line", problem, where))]
    if isinstance(value, list):
        return [(f"{where}[{index}]", item) for index, item in enumerate(value, 1)]
    return [(where, value)]


_NOT_READ = object()
