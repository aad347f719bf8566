"""One line of an import's input (JSON lines) as the events it holds, or its problem."""

from __future__ import annotations

import json
from typing import Any

from evflow.core.events import parse_json
from evflow.core.jsontext import NOT_READ, read
from evflow.errors import InvalidEvent

# orjson reads a line ~3 times faster than json (jsontext.read says where json reads it
# instead). A line of 512 opening brackets or more is json's too: orjson refuses nesting past
# 1,024 levels, which json may refuse with another message.
_NESTING = 512


def parse_line(where: str, raw: bytes) -> list[tuple[str, Any]]:
    """The ``(where, value)`` pairs of one line: none for a blank line, one for an object (or
    its :class:`InvalidEvent`: not UTF-8, malformed JSON), one per item for a JSON array (a
    CloudEvents batch, ``application/cloudevents-batch+json``, named ``where[1]``...)."""
    value: Any = NOT_READ
    if len(raw) < _NESTING or raw.count(b"[") + raw.count(b"{") < _NESTING:
        # refused: json says what is wrong (or reads it: a lone surrogate, see check_json)
        value = read(raw)
    if value is NOT_READ:
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
