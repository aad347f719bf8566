"""Schedules (SPEC §3): cron occurrences in a time zone, each emitted once as an event.

Occurrences are the cron expression's wall-clock times in the schedule's zone, mapped to instants.
Daylight-saving time follows Vixie cron, the behaviour most users know from their servers:

* a *fixed-time* schedule (neither the minute nor the hour field starts with ``*``; ``@daily``,
  ``@weekly``… are fixed, ``@hourly`` is not) runs once per matching local time:

  - a local time that does not exist (the spring-forward gap) runs at the shifted instant, the
    wall time read with the offset in force before the change (PEP 495 ``fold=0``): ``02:30`` in
    Europe/Berlin on 2026-03-29 runs at ``03:30 CEST`` (01:30 UTC). Skipping it would silently
    drop a nightly job once a year; running it an hour "late" keeps the day's count right.
  - a local time that happens twice (fall back) runs once, at its first occurrence: ``02:30``
    on 2026-10-25 runs at ``02:30 CEST`` (00:30 UTC), not again at ``02:30 CET``.

* a schedule with a wildcard minute or hour (``*/15 * * * *``, ``0 * * * *``) is about elapsed
  time: it runs at every real instant whose local time matches, so the repeated hour runs twice
  and the skipped hour not at all (an hourly schedule has 25 runs on the fall-back day, 23 on the
  spring-forward day), as in Vixie cron.

croniter's own DST handling (7.x) differs from both (the gap occurrence at 03:00, the repeated
one twice for a daily schedule), so croniter only iterates naive wall times here and the mapping
to instants is ours. croniter is imported lazily, here and in :mod:`evflow.windows` only.

Ticking: each schedule's ``schedule_ticks.last_time`` is the end of the span already handled. A
tick at ``now`` emits the occurrences in ``(last_time, now]`` and moves ``last_time`` to ``now``
in the transaction that appends them, under the store's write lock, so two ticks (two processes)
never emit an occurrence twice; the occurrence's event ``id`` (``schedule:NAME:TIME``) makes a
repeat a duplicate anyway. A schedule met for the first time starts at ``now`` (no back-fill).

Catch-up, for occurrences older than :data:`GRACE` when the tick sees them (the ticker was down):
``latest`` emits only the most recent missed one (none when an on-time one supersedes it),
``all`` emits each of them, ``none`` skips them. On-time occurrences are always emitted; in all
cases at most ``max_catchup`` (the most recent) are emitted by one tick.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo

from evflow.errors import EvflowError
from evflow.events import Event, format_time, normalize, now_utc, parse_time
from evflow.routing import Outcome, Router

if TYPE_CHECKING:
    from evflow.app import Evflow
    from evflow.rules import Schedule
    from evflow.store.sql import Transaction

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


def _instants(wall: datetime, tz: ZoneInfo, fixed: bool) -> list[tuple[datetime, tuple[str, ...]]]:
    """The instants (UTC) at which the naive local time ``wall`` runs, with DST flags."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [(first, ())]
    if first.astimezone(tz).replace(tzinfo=None) != wall:  # in the gap: the wall time never shows
        return [(first, (DST_SHIFT,))] if fixed else []
    if fixed:
        return [(first, (DST_REPEAT,))]
    return [(first, (DST_REPEAT,)), (second, (DST_REPEAT,))]


def _walls(cron: str, start: datetime, backwards: bool = False) -> Iterator[datetime]:
    """Naive wall times matching ``cron`` after (or before) the naive ``start``."""
    from croniter import CroniterBadDateError, croniter  # lazily: see the module docstring

    it = croniter(cron, start)
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


def _last_tick(tx: Transaction, name: str) -> datetime | None:
    row = tx.execute("SELECT last_time FROM schedule_ticks WHERE name = ?", (name,)).fetchone()
    return None if row is None else parse_time(row[0])


def _record_tick(tx: Transaction, name: str, at: datetime) -> None:
    tx.execute(
        "INSERT INTO schedule_ticks (name, last_time, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET last_time = excluded.last_time,"
        " updated_at = excluded.updated_at",
        (name, format_time(at), tx.store.clock()),
    )


@dataclass(slots=True)
class TickReport:
    """What one tick did: an outcome per emitted occurrence, and the schedules that failed."""

    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[ScheduleFailed] = field(default_factory=list)
    next_due: datetime | None = None  # the earliest next occurrence of any schedule

    @property
    def events(self) -> list[Event]:
        return [o.event for o in self.outcomes]


def tick_schedule(flow: Evflow, schedule: Schedule, now: datetime, router: Router) -> list[Outcome]:
    """Emit ``schedule``'s due occurrences and advance its last tick, in one transaction."""
    outcomes: list[Outcome] = []
    with flow.store.write() as tx:
        last = _last_tick(tx, schedule.name)
        if last is not None and now <= last:
            return outcomes  # an earlier --now, or a clock that went back: nothing, ever, twice
        for at in [] if last is None else due(schedule, last, now):
            outcome = router.append(tx, occurrence_event(schedule, at))
            if not outcome.duplicate:
                outcomes.append(outcome)
        _record_tick(tx, schedule.name, now)
    return outcomes


def tick_report(flow: Evflow, now: datetime | None = None) -> TickReport:
    """Tick every schedule at ``now`` (default: the clock); one failing does not stop others."""
    now = (now or now_utc()).astimezone(UTC)
    report = TickReport()
    router = Router(flow.ruleset)
    for schedule in flow.ruleset.schedules:
        try:
            report.outcomes.extend(tick_schedule(flow, schedule, now, router))
        except ScheduleFailed as exc:
            report.errors.append(exc)
        except EvflowError as exc:
            # a rule reacting to the scheduled event failed (an emit template, a chain too deep):
            # that schedule's transaction rolled back and is retried next tick; the others go on
            report.errors.append(ScheduleFailed(f"schedule {schedule.name}: {exc.message}"))
        upcoming = next_occurrence(schedule, now)
        if upcoming is not None and (report.next_due is None or upcoming.utc < report.next_due):
            report.next_due = upcoming.utc
    report.outcomes.sort(key=lambda o: (o.event["time"], o.event["seq"]))
    return report


def tick(flow: Evflow, now: datetime | None = None) -> list[Event]:
    """Emit every schedule occurrence due at ``now``, once each; returns the emitted events.

    Raises :class:`ScheduleFailed` (after ticking the other schedules) when one failed.
    """
    report = tick_report(flow, now)
    if report.errors:
        raise report.errors[0]
    return report.events


# the worker's loop calls tick_once every second or so; it needs the database only when an
# occurrence may be due (or the rules changed), not on every turn
_NEXT_DUE: WeakKeyDictionary[Evflow, tuple[int, datetime | None]] = WeakKeyDictionary()


def tick_once(
    flow: Evflow, now: datetime | None = None, warn: Callable[[str], None] | None = None
) -> list[Event]:
    """A worker's tick: like :func:`tick`, cheap when nothing is due, never raising on a
    failing template (``warn`` gets the message; the occurrence is retried next time)."""
    now = (now or now_utc()).astimezone(UTC)
    ruleset = flow.ruleset
    cached = _NEXT_DUE.get(flow)
    if cached is not None and cached[0] == id(ruleset) and (cached[1] is None or now < cached[1]):
        return []
    report = tick_report(flow, now)
    for error in report.errors:
        if warn is not None:
            warn(f"evflow: error: {error}")
    if report.errors:  # retried on the next turn
        _NEXT_DUE.pop(flow, None)
    else:
        _NEXT_DUE[flow] = (id(ruleset), report.next_due)
    return report.events


def ticks(flow: Evflow) -> dict[str, datetime]:
    """Each known schedule's last tick."""
    store = flow.store
    try:
        rows = store.execute("SELECT name, last_time FROM schedule_ticks").fetchall()
    finally:
        store.end_read()
    return {name: parse_time(text) for name, text in rows}
