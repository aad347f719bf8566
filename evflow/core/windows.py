"""Date and cron windows (SPEC §3 "Windows"), judged against an event's time, never the wall clock.

The only module importing croniter for windows; it imports croniter lazily because the import
costs more than a whole ``evflow emit`` should, and most windows have no cron.

Cron: the event time, in the window's timezone, must fall in a minute the expression matches. A
6-field expression (croniter's optional sixth field is seconds) must match the exact second.
croniter's ``@hourly``-style aliases are accepted; 7-field expressions (with a year) are not.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from evflow.core.structs import dataclass
from evflow.core.text import LazyPattern


def load_timezone(name: str) -> ZoneInfo:
    """The IANA timezone called ``name``; ValueError names it when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError/OSError: names like '' or '../x' or a tzdata folder ('America').
        raise ValueError(f"unknown timezone '{name}'") from None


def suggest_timezone(name: str) -> str | None:
    """The IANA name ``name`` most likely meant: same letters in another case (``asia/seoul``),
    a city alone (``berlin``), or a near spelling (``Europe/Berln``)."""
    import difflib
    from zoneinfo import available_timezones

    zones = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
    wanted = name.strip().lower().replace(" ", "_")
    by_lower = {z.lower(): z for z in zones}
    if wanted in by_lower:
        return by_lower[wanted]
    cities = {z.rsplit("/", 1)[-1].lower(): z for z in reversed(zones)}
    if wanted in cities:
        return cities[wanted]
    close = difflib.get_close_matches(wanted, list(by_lower), n=1, cutoff=0.8)
    if close:
        return by_lower[close[0]]
    close = difflib.get_close_matches(wanted, list(cities), n=1, cutoff=0.8)
    return cities[close[0]] if close else None


_DATE = LazyPattern(r"\d{4}-\d{2}-\d{2}")


#: a window bound: a date, or a date-time with minutes or seconds, an optional fraction and offset
BOUND_PATTERN = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)
_BOUND_TEXT = LazyPattern(BOUND_PATTERN)


def parse_bound(value: str | date | datetime, tz: ZoneInfo) -> datetime:
    """A bound as an aware UTC datetime; a date is midnight in ``tz``, a naive time is in ``tz``."""
    if isinstance(value, datetime):  # before `date`: a datetime is also a date
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0))
    elif isinstance(value, str):
        text = value.strip()
        try:
            if not _BOUND_TEXT.fullmatch(text):  # what the JSON Schema's pattern says too
                raise ValueError
            if _DATE.fullmatch(text):
                moment = datetime.combine(date.fromisoformat(text), time(0))
            else:
                moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"invalid date or date-time '{value}' "
                "(expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS with an optional offset)"
            ) from None
    else:
        raise ValueError(f"expected a date or date-time, got {type(value).__name__} {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def check_cron(expr: str) -> str | None:
    """None when ``expr`` is a valid cron expression, else the problem in one line."""
    fields = expr.split()
    if not fields:
        return "empty cron expression"
    if not fields[0].startswith("@") and len(fields) != 5:
        # croniter would also take a 6th field (seconds, or a year): the docs say 5, and a
        # seconds field would fire 60 times a minute
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    if not fields[0].startswith("@"):
        problem = _field_ranges(fields)
        if problem is not None:
            return problem
    from croniter import croniter  # lazily: see the module docstring

    try:
        croniter(expr)
    except (ValueError, KeyError) as exc:  # croniter's errors derive from ValueError
        detail = str(exc).split("]", 1)[-1].strip() or "is not acceptable"
        return f"invalid cron expression '{expr}': {detail}"
    return None


#: name, lowest, highest of each cron field (a sixth field is seconds)
_CRON_FIELDS = (
    ("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12),
    ("day-of-week", 0, 7), ("second", 0, 59),
)  # fmt: skip
_NUMBER = LazyPattern(r"\d+")


def _field_ranges(fields: list[str]) -> str | None:
    """The first number outside its field's range, named: ``hour 25: out of range 0-23``."""
    for text, (name, low, high) in zip(fields, _CRON_FIELDS, strict=False):
        for part in text.split(","):
            values, _, step = part.partition("/")
            if "#" in values or values.upper().endswith("L"):
                continue  # nth weekday, last day: croniter's own checks
            for number in _NUMBER.findall(values):
                if not low <= int(number) <= high:
                    return f"{name} {int(number)}: out of range {low}-{high}"
            if step and step.isdigit() and int(step) == 0:
                return f"{name}: step 0 in '{part}'"
    return None


@cache
def day_or(expr: str) -> bool:
    """Vixie cron's rule for the two day fields: a day matches either of them when both are
    restricted; when one of them starts with ``*`` (``*``, ``*/2``: DOM_STAR, DOW_STAR) it must
    match both (``0 0 */2 * 1``: odd days that are Mondays)."""
    fields = expr.split()
    if len(fields) < 5:  # @daily, @weekly…: one day field is always '*'
        return False
    return not (fields[2].startswith("*") or fields[4].startswith("*"))


def _matcher(expr: str) -> Any:
    """A fast test for one expression: croniter.match rebuilds an iterator per call (~0.3 ms)."""
    from croniter import croniter

    parsed = croniter(expr)
    expanded = parsed.expanded
    simple = (
        not parsed.nth_weekday_of_month
        and not getattr(parsed, "nearest_weekday", None)
        and all(isinstance(v, int) or v == "*" for f in expanded for v in f)
    )
    if not simple:  # 'L', '#', 'W': leave the calendar arithmetic to croniter
        either = day_or(expr)
        return lambda local: croniter.match(expr, local, day_or=either)

    def allowed(values: list[Any]) -> frozenset[int] | None:
        return None if values[0] == "*" else frozenset(values)

    minute, hour, dom, month, dow = (allowed(f) for f in expanded[:5])
    second = allowed(expanded[5]) if len(expanded) > 5 else None
    either = day_or(expr)

    def match(local: datetime) -> bool:
        if (
            (minute is not None and local.minute not in minute)
            or (hour is not None and local.hour not in hour)
            or (month is not None and local.month not in month)
            or (second is not None and local.second not in second)
        ):
            return False
        dom_ok = dom is None or local.day in dom
        dow_ok = dow is None or (local.isoweekday() % 7) in dow
        return (dom_ok or dow_ok) if either else (dom_ok and dow_ok)

    return match


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """Whether a time falls in a window, and why (for ``rules explain``)."""

    ok: bool
    reason: str


_INSIDE = WindowCheck(True, "inside window")  # one for all: it is frozen


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open [start, end) span, optionally narrowed by a cron expression."""

    start: datetime | None
    end: datetime | None
    timezone: str
    cron: str | None = None

    def check(self, t: datetime) -> WindowCheck:
        """Judge an (aware) event time against the window."""
        if t.tzinfo is None:
            raise ValueError("event time must carry a timezone offset")
        if self.start is not None and t < self.start:
            return WindowCheck(False, f"before from {self._iso(self.start)}")
        if self.end is not None and t >= self.end:
            return WindowCheck(False, f"at or after until {self._iso(self.end)}")
        if self.cron is not None and not _matcher(self.cron)(t.astimezone(self._tz())):
            return WindowCheck(False, f"outside cron '{self.cron}' ({self.timezone})")
        return _INSIDE

    def state_at(self, t: datetime) -> str:
        """'pending' before start, 'expired' from end on, else 'active' (cron does not count)."""
        if self.start is not None and t < self.start:
            return "pending"
        if self.end is not None and t >= self.end:
            return "expired"
        return "active"

    def describe(self) -> str:
        """The window in words, in its own timezone."""
        parts = []
        if self.start is not None:
            parts.append(f"from {self._local(self.start)} {self.timezone}")
        if self.end is not None:
            parts.append(f"until {self._local(self.end)} {self.timezone}")
        text = " ".join(parts)
        if self.cron is not None:
            cron = f"cron '{self.cron}'"
            text = f"{text}, {cron}" if text else f"{cron} ({self.timezone})"
        return text or "always"

    def _tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # zoneinfo caches instances by name

    def _iso(self, moment: datetime) -> str:
        return _iso_in(moment, self.timezone)

    def _local(self, moment: datetime) -> str:
        local = moment.astimezone(self._tz())
        return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")


@cache
def _iso_in(moment: datetime, timezone: str) -> str:
    """A window's bound in its timezone, for the reason an event is outside it: the same few
    bounds for every event judged (an import judges one per event and rule)."""
    return moment.astimezone(ZoneInfo(timezone)).isoformat()


def make_window(from_: Any, until: Any, timezone: str, cron: str | None) -> Window:
    """A validated window; ValueError for a bad timezone, bound or cron, or until <= from."""
    tz = load_timezone(timezone)
    start = None if from_ is None else parse_bound(from_, tz)
    end = None if until is None else parse_bound(until, tz)
    if start is not None and end is not None and end <= start:
        raise ValueError(f"until ({until}) must be after from ({from_})")
    if cron is not None:
        problem = check_cron(cron)
        if problem is not None:
            raise ValueError(problem)
    return Window(start, end, timezone, cron)


_DURATION_PART = LazyPattern(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in '30s', '10m', '2h', '1d', '500ms', '1h30m', or a plain number of seconds."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r} (expected e.g. 30s, 10m, 1h30m)")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        compact = text.strip().replace(" ", "")
        try:
            seconds = float(compact)
        except ValueError:
            parts = _DURATION_PART.findall(compact)
            if not parts or "".join(n + u for n, u in parts) != compact:
                raise ValueError(
                    f"invalid duration '{text}' (expected e.g. 30s, 10m, 2h, 1d, 500ms, 1h30m)"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"invalid duration {text!r} (must be a finite, non-negative time)")
    return seconds
