"""Parsing option values that name a time or a position in the log, for every command.

Kept apart from typer so that ``emit``'s fast path can use it too.
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
    if value.isdigit():
        return int(value), None
    from evflow.core.events import format_time, parse_time

    try:
        return None, format_time(parse_time(value))
    except ValueError as exc:
        raise UsageError(f"{option}: expected a seq or an RFC 3339 time ({exc})") from None
