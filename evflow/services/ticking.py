"""Ticking schedules: emit each due occurrence once, and remember how far each schedule got.

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

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from evflow.core.cron import ScheduleFailed, due, next_occurrence, occurrence_event
from evflow.core.events import Event, format_time, now_utc, parse_time
from evflow.core.routing import Outcome
from evflow.core.rules import RuleSet, Schedule
from evflow.errors import EvflowError
from evflow.services.append import Appender
from evflow.store import ticks as tick_rows
from evflow.store.interface import Store


@dataclass(slots=True)
class TickReport:
    """What one tick did: an outcome per emitted occurrence, and the schedules that failed."""

    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[ScheduleFailed] = field(default_factory=list)
    # rules that failed on an occurrence: recorded with it (evflow show), the tick goes on
    warnings: list[str] = field(default_factory=list)
    next_due: datetime | None = None  # the earliest next occurrence of any schedule

    @property
    def events(self) -> list[Event]:
        return [o.event for o in self.outcomes]


def tick_schedule(
    store: Store, schedule: Schedule, now: datetime, appender: Appender
) -> list[Outcome]:
    """Emit ``schedule``'s due occurrences and advance its last tick, in one transaction."""
    outcomes: list[Outcome] = []
    with store.write() as tx:
        text = tick_rows.last_tick(tx, schedule.name)
        last = None if text is None else parse_time(text)
        if last is not None and now <= last:
            return outcomes  # an earlier --now, or a clock that went back: nothing, ever, twice
        for at in [] if last is None else due(schedule, last, now):
            outcome = appender.append(tx, occurrence_event(schedule, at))
            if not outcome.duplicate:
                outcomes.append(outcome)
        tick_rows.record_tick(tx, schedule.name, format_time(now))
    return outcomes


def tick_report(store: Store, ruleset: RuleSet, now: datetime | None = None) -> TickReport:
    """Tick every schedule at ``now`` (default: the clock); one failing does not stop others."""
    now = (now or now_utc()).astimezone(UTC)
    report = TickReport()
    appender = Appender(ruleset)
    for schedule in ruleset.schedules:
        try:
            outcomes = tick_schedule(store, schedule, now, appender)
            report.outcomes.extend(outcomes)
            report.warnings.extend(
                f"schedule {schedule.name}: {w}" for o in outcomes for w in o.warnings()
            )
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


def tick(store: Store, ruleset: RuleSet, now: datetime | None = None) -> list[Event]:
    """Emit every schedule occurrence due at ``now``, once each; returns the emitted events.

    Raises :class:`ScheduleFailed` (after ticking the other schedules) when one failed.
    """
    report = tick_report(store, ruleset, now)
    if report.errors:
        raise report.errors[0]
    return report.events


class Ticker:
    """A worker's ticks: it needs the database only when an occurrence may be due (or the rules
    changed), not on every turn of its loop."""

    def __init__(self) -> None:
        self._next_due: tuple[int, datetime | None] | None = None  # (id of the rules, when)

    def tick(
        self,
        store: Store,
        ruleset: RuleSet,
        now: datetime | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> list[Event]:
        """Like :func:`tick`, cheap when nothing is due, never raising on a failing template
        (``warn`` gets the message; the occurrence is retried next time)."""
        now = (now or now_utc()).astimezone(UTC)
        cached = self._next_due
        if (
            cached is not None
            and cached[0] == id(ruleset)
            and (cached[1] is None or now < cached[1])
        ):
            return []
        report = tick_report(store, ruleset, now)
        for error in report.errors:
            if warn is not None:
                warn(f"evflow: error: {error}")
        for warning in report.warnings:
            if warn is not None:
                warn(f"evflow: warning: {warning}")
        # after an error, retried on the next turn
        self._next_due = None if report.errors else (id(ruleset), report.next_due)
        return report.events


def ticks(store: Store) -> dict[str, datetime]:
    """Each known schedule's last tick."""
    return {name: parse_time(text) for name, text in tick_rows.all_ticks(store).items()}
