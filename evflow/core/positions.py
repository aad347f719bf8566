"""Parsing values that name a time or a position in the log: the CLI's options (``--since``,
``--as-of``…) and serve's query parameters (``since``, ``as_of``…), with the same answers and the
same one-line errors. Pure (no typer: ``emit``'s fast path uses it too).
"""

from __future__ import annotations

from datetime import datetime

from evflow.errors import UsageError


def parse_time_option(value: str, option: str) -> datetime:
    """An RFC 3339 time (or a date) given to ``option``; a usage error naming it otherwise."""
    from evflow.core.events import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def parse_position(value: str | None, option: str) -> tuple[int | None, str | None]:
    """``--since``/``--until``/``--as-of``: a seq (digits) or an RFC 3339 time, as
    ``(seq, canonical UTC time text)`` with one of them set (both None when not given)."""
    if value is None:
        return None, None
    if value.isascii() and value.isdigit():
        if len(value) > 19:
            raise UsageError(f"{option}: {value[:30]} is out of range (0 to {MAX_POSITION})")
        return check_position(value, option), None
    from evflow.core.events import format_time, parse_time

    try:
        return None, format_time(parse_time(value))
    except ValueError as exc:
        raise UsageError(f"{option}: expected a seq or an RFC 3339 time ({exc})") from None


#: the largest position or delivery id a log can hold (a signed 64-bit integer in both backends)
MAX_POSITION = 2**63 - 1


def check_position(value: str | int, option: str) -> int:
    """A seq or delivery id given to ``option``, refused (one line) beyond what a log can hold."""
    number = int(value)
    if not 0 <= number <= MAX_POSITION:
        raise UsageError(f"{option}: {value} is out of range (0 to {MAX_POSITION})")
    return number
