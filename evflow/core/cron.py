"""Cron maths for schedules (SPEC §3): occurrences in a time zone, with daylight-saving rules.

Occurrences are the cron expression's wall-clock times in the schedule's zone, mapped to instants.
Daylight-saving time follows Vixie cron, the behaviour most users know from their servers:

* a *fixed-time* schedule (neither the minute nor the hour field starts with ``*``; ``@daily``,
  ``@weekly``… are fixed, ``@hourly`` is not) runs once per matching local time:

  - a local time that does not exist (the spring-forward gap) runs at the first instant after
    the gap: ``02:30`` in Europe/Berlin on 2026-03-29 runs at ``03:00 CEST`` (01:00 UTC), as
    Vixie cron does. Skipping it would silently drop a nightly job once a year; several times in
    one gap run once, and a time after the gap still runs at its own time (``30 0-23 * * *``
    runs 01:30, 03:00, 03:30, 04:30 that day).
  - a local time that happens twice (fall back) runs once, at its first occurrence: ``02:30``
    on 2026-10-25 runs at ``02:30 CEST`` (00:30 UTC), not again at ``02:30 CET``.

* a schedule with a wildcard minute or hour (``*/15 * * * *``, ``0 * * * *``) is about elapsed
  time: it runs at every real instant whose local time matches, so the repeated hour runs twice
  and the skipped hour not at all (an hourly schedule has 25 runs on the fall-back day, 23 on the
  spring-forward day), as in Vixie cron.

When both day fields are restricted a day matches either; when one starts with ``*`` both must
match (Vixie's DOM_STAR/DOW_STAR rule: ``0 0 */2 * 1`` is odd days that are Mondays).

The tests compare these occurrences with cronsim, an independent implementation of Debian's cron.
croniter's own DST handling (7.x) differs from both (the gap occurrence at 03:00, the repeated
one twice for a daily schedule), so croniter only iterates naive wall times here and the mapping
to instants is ours. croniter is imported lazily, here and in :mod:`evflow.core.windows` only.

Ticking (recording which occurrences were emitted) is :mod:`evflow.services.ticking`.
"""

from __future__ import annotations

import bisect
import heapq
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from evflow.core.events import Event, format_time, normalize
from evflow.core.windows import day_or
from evflow.errors import EvflowError

if TYPE_CHECKING:
    from evflow.core.rules import Schedule

#: an occurrence seen by a tick at most this late is on time, not missed (Quartz's default
#: misfire threshold); only missed occurrences are subject to the catch-up policy
GRACE = timedelta(seconds=60)
#: larger than any daylight-saving shift: how far a wall time's instant may move from its reading
_MARGIN = timedelta(hours=3)

DST_SHIFT = "dst-shift"  # the local time did not exist; run at the shifted instant
DST_REPEAT = "dst-repeat"  # the local time happened twice
OUTSIDE_WINDOW = "outside-window"

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleFailed(EvflowError):
    """A schedule's occurrence could not be emitted (its data or subject template failed)."""


class Occurrence(NamedTuple):
    """One occurrence: its local time (aware, in the schedule's zone), its UTC time, and flags."""

    local: datetime
    utc: datetime
    flags: tuple[str, ...] = ()


def is_fixed_time(cron: str) -> bool:
    """Whether DST treats ``cron`` as a fixed local time (see the module docstring)."""
    text = _ALIASES.get(cron.strip().lower(), cron)
    fields = text.split()
    return len(fields) >= 2 and not fields[0].startswith("*") and not fields[1].startswith("*")


def _real(wall: datetime, tz: ZoneInfo) -> datetime:
    """The wall time that ``wall`` (naive, read with ``fold=0``) shows once it is an instant."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz).replace(tzinfo=None)


def _instants(wall: datetime, tz: ZoneInfo, fixed: bool) -> list[tuple[datetime, tuple[str, ...]]]:
    """The instants (UTC) at which the naive local time ``wall`` runs, with DST flags."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [(first, ())]
    if first.astimezone(tz).replace(tzinfo=None) != wall:  # in the gap: the wall time never shows
        if not fixed:
            return []
        # the first minute after the gap, as Vixie cron (and cronsim) run it
        shifted = wall
        while _real(shifted, tz) != shifted:
            shifted += timedelta(minutes=1)
        return [(shifted.replace(tzinfo=tz, fold=0).astimezone(UTC), (DST_SHIFT,))]
    if fixed:
        return [(first, (DST_REPEAT,))]
    return [(first, (DST_REPEAT,)), (second, (DST_REPEAT,))]


_SINGLE_RANGE = re.compile(r"(?<![\w/])(\w+)-\1(?:/\d+)?(?![\w-])")


def _single_ranges(cron: str) -> str:
    """``1-1`` as ``1``: croniter 7 reads a range of one value as the whole field (``*``)."""
    return _SINGLE_RANGE.sub(r"\1", cron)


def _walls(cron: str, start: datetime, backwards: bool = False) -> Iterator[datetime]:
    """Naive wall times matching ``cron`` after (or before) the naive ``start``."""
    from croniter import CroniterBadDateError, croniter  # lazily: see the module docstring

    it = croniter(_single_ranges(cron), start, day_or=day_or(cron))
    step = it.get_prev if backwards else it.get_next
    while True:
        try:
            yield step(datetime)
        except CroniterBadDateError:  # an expression that never matches again (30 February)
            return


def occurrences(schedule: Schedule, after: datetime) -> Iterator[Occurrence]:
    """Every occurrence strictly after ``after`` (aware), in time order, ignoring the window."""
    tz = ZoneInfo(schedule.timezone)
    fixed = is_fixed_time(schedule.cron)
    # A shifted instant comes later than its wall time reads: start early, hold such instants
    # back until an ordinary one passes them, so the stream stays in time order.
    start = after.astimezone(tz).replace(tzinfo=None) - _MARGIN
    pending: list[tuple[datetime, tuple[str, ...]]] = []
    last: datetime | None = None

    def release(upto: datetime | None) -> Iterator[Occurrence]:
        nonlocal last
        while pending and (upto is None or pending[0][0] <= upto):
            utc, flags = heapq.heappop(pending)
            if utc > after and utc != last:
                last = utc
                yield Occurrence(utc.astimezone(tz), utc, flags)

    for wall in _walls(schedule.cron, start):
        for utc, flags in _instants(wall, tz, fixed):
            if DST_SHIFT in flags or utc > wall.replace(tzinfo=tz, fold=0).astimezone(UTC):
                heapq.heappush(pending, (utc, flags))  # shifted, or the second of a repeat
                continue
            yield from release(utc)
            if utc > after and utc != last:
                last = utc
                yield Occurrence(utc.astimezone(tz), utc, flags)
    yield from release(None)


def _in_window(schedule: Schedule, utc: datetime) -> bool:
    return schedule.window is None or schedule.window.check(utc).ok


def due(schedule: Schedule, last: datetime, now: datetime) -> list[datetime]:
    """The occurrences (UTC) a tick at ``now`` emits when the last tick was at ``last``.

    Only occurrences in ``(last, now]`` inside the active window; catch-up and ``max_catchup``
    applied (see the module docstring). In time order.
    """
    if now <= last:
        return []
    missed_until = now - GRACE
    lower = last
    if schedule.window is not None and schedule.window.start is not None:
        lower = max(lower, schedule.window.start - timedelta(microseconds=1))
    if schedule.window is not None and schedule.window.end is not None:
        now = min(now, schedule.window.end - timedelta(microseconds=1))
    if now <= lower:
        return []
    candidates = [o.utc for o in _recent(schedule, lower, now) if _in_window(schedule, o.utc)]
    cut = bisect.bisect_right(candidates, missed_until)
    missed, on_time = candidates[:cut], candidates[cut:]
    if schedule.catchup == "all":
        chosen = missed + on_time
    elif schedule.catchup == "none" or on_time:
        chosen = on_time
    else:  # latest
        chosen = missed[-1:]
    return chosen[-schedule.max_catchup :]


def _recent(schedule: Schedule, last: datetime, now: datetime) -> list[Occurrence]:
    """Occurrences in ``(last, now]``: enough of the most recent ones for any catch-up policy.

    A long gap (a year of a minute schedule) is not walked from its start: a walk backwards from
    ``now`` finds where the last ``max_catchup`` occurrences begin, then the forward walk (exact
    about DST) starts a margin before that.
    """
    tz = ZoneInfo(schedule.timezone)
    fixed = is_fixed_time(schedule.cron)
    wall_last = last.astimezone(tz).replace(tzinfo=None) - _MARGIN
    need = schedule.max_catchup + 1
    start = wall_last
    found = 0
    for wall in _walls(schedule.cron, now.astimezone(tz).replace(tzinfo=None) + _MARGIN, True):
        if wall < wall_last:
            break
        found += sum(1 for utc, _ in _instants(wall, tz, fixed) if last < utc <= now)
        if found >= need:
            start = wall - _MARGIN
            break
    out: list[Occurrence] = []
    after = max(last, start.replace(tzinfo=tz).astimezone(UTC))
    for occurrence in occurrences(schedule, after):
        if occurrence.utc > now:
            break
        out.append(occurrence)
    return out


def next_occurrence(schedule: Schedule, after: datetime) -> Occurrence | None:
    """The first occurrence after ``after`` inside the active window; None once it has ended."""
    window = schedule.window
    if window is not None and window.start is not None and after < window.start:
        after = window.start - timedelta(microseconds=1)
    for occurrence in occurrences(schedule, after):
        if window is not None and window.end is not None and occurrence.utc >= window.end:
            return None
        return occurrence
    return None


def preview(schedule: Schedule, start: datetime, n: int) -> list[Occurrence]:
    """The next ``n`` occurrences after ``start``, flagged (DST, outside the active window)."""
    out: list[Occurrence] = []
    for occurrence in occurrences(schedule, start):
        if len(out) >= n:
            break
        if not _in_window(schedule, occurrence.utc):
            occurrence = occurrence._replace(flags=(*occurrence.flags, OUTSIDE_WINDOW))
        out.append(occurrence)
    return out


def state_at(schedule: Schedule, at: datetime) -> str:
    """``pending`` before its window, ``expired`` after it, else ``active``."""
    return "active" if schedule.window is None else schedule.window.state_at(at)


# -- ticking ----------------------------------------------------------------------------------


def occurrence_event(schedule: Schedule, at: datetime) -> Event:
    """The event for one occurrence; its ``id`` is a function of the schedule and the time."""
    tz = ZoneInfo(schedule.timezone)
    variables = {
        "schedule": {
            "name": schedule.name,
            "time": format_time(at),
            "local_time": at.astimezone(tz).isoformat(),
            "timezone": schedule.timezone,
            "cron": schedule.cron,
        }
    }
    where = f"schedule {schedule.name}"
    try:
        data = {} if schedule.data is None else schedule.data.render(variables)
        subject = None if schedule.subject is None else schedule.subject.render(variables)
    except Exception as exc:  # noqa: BLE001 - CEL raises several kinds; all mean "this template"
        raise ScheduleFailed(
            f"{where}: template failed at {format_time(at)}: {exc}",
            hint="check the schedule's data/subject (variables: schedule.name, schedule.time)",
        ) from None
    if not isinstance(data, dict):
        raise ScheduleFailed(f"{where}: data must render to a map, got {type(data).__name__}")
    raw: dict[str, Any] = {
        "id": f"schedule:{schedule.name}:{at.astimezone(UTC).isoformat().replace('+00:00', 'Z')}",
        "source": f"evflow:schedule/{schedule.name}",
        "type": schedule.emit,
        "time": format_time(at),
        "data": data,
    }
    if subject is not None:
        raw["subject"] = str(subject)
    return normalize(raw, where=where)
