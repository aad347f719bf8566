"""One line of an import's input (JSON lines) as the events it holds, or its problem."""

from __future__ import annotations

import json
from typing import Any

from evflow.core.events import parse_json
from evflow.errors import InvalidEvent


def parse_line(where: str, raw: bytes) -> list[tuple[str, Any]]:
    """The ``(where, value)`` pairs of one line: none for a blank line, one for an object (or
    its :class:`InvalidEvent`: not UTF-8, malformed JSON), one per item for a JSON array (a
    CloudEvents batch, ``application/cloudevents-batch+json``, named ``where[1]``...)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [(where, InvalidEvent("line", f"not UTF-8 text (byte {exc.start + 1})", where))]
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
