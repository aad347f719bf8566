"""Values between CEL and JSON: CEL's results as JSON values, JSON's numbers as CEL can take them.

- :func:`to_json`: CEL timestamps become RFC 3339 UTC strings ending in ``Z``, durations seconds
  as a float, bytes base64 text, CEL types their name, non-string map keys their JSON text.
- :func:`cel_safe`: integers beyond CEL's 64 bits (JSON allows them, evflow keeps them exactly)
  become doubles, so one such field does not make every expression on its event fail.
- :func:`holds_nul`: whether a value holds a string with U+0000, which cel-expr-python cuts at
  the NUL on the way in (``"a\\u0000b"`` would be ``"a"`` to CEL, so ``data.s == "a"`` would
  match); such values are refused by CEL evaluation rather than evaluated wrongly.
"""

from __future__ import annotations

import base64
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from evflow.core.text import as_text as _text

_SCALARS = (bool, int, float, str, type(None))


_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


def cel_safe(value: Any) -> Any:
    """``value`` with every integer outside CEL's 64-bit range as a double (or, beyond a
    double's range, as its decimal text)."""
    kind = type(value)
    if kind is int:
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
        try:
            return float(value)
        except OverflowError:
            return str(value)
    if kind is dict:
        return {k: cel_safe(v) for k, v in value.items()}
    if kind is list:
        return [cel_safe(v) for v in value]
    return value


def holds_nul(value: Any) -> bool:
    """Whether ``value`` (JSON-like) holds U+0000 in a string, a map key or bytes."""
    kind = type(value)
    if kind is str or kind is bytes:
        return "\x00" in value if kind is str else b"\x00" in value
    if kind is dict:
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return any(holds_nul(v) for v in value)
    return False


def to_json(value: Any) -> Any:
    """Turn a CEL plain value into a JSON-compatible Python value (conventions: module doc)."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return {_key(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value
        return (
            utc.strftime("%Y-%m-%dT%H:%M:%S")
            + (f".{utc.microsecond:06d}".rstrip("0") if utc.microsecond else "")
            + "Z"
        )
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    cel = sys.modules.get("cel_expr_python.cel")  # a CEL value comes from a loaded CEL
    if cel is not None and isinstance(value, cel.Type):
        return value.name()
    return str(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else _text(to_json(key))


def json_type(value: Any) -> str:
    """The JSON kind of a value, as error messages name it: null, bool, number, string…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "map"
