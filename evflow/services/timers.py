"""Firing timers: every pending timer due at or before ``now``, once each, in due-time order.

A batch at a time, under the store's write lock: the due timers are read (one indexed query), each
fires (an ``emit`` timer appends the event rendered when its cause was recorded: ``time`` = the due
time, ``id`` from (cause, rule, action), the cause's lineage; a ``run``/``http`` timer becomes a
delivery owed to its cause) and is marked fired, and the batch commits. Two tickers in two
processes therefore never fire a timer twice, a killed tick loses at most its uncommitted batch
(fired by the next tick), and memory stays flat however many timers are due.

A rule failing on a fired event is recorded with it, as on any event (the timer fires). One timer
whose event cannot be appended at all is undone alone, stays pending and is reported; the others
fire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from evflow.core.events import format_time, now_utc
from evflow.core.routing import Outcome
from evflow.core.rules import RuleSet
from evflow.core.timers import TimerRecord, fired_event
from evflow.errors import EvflowError
from evflow.services.append import Appender, each_in_savepoint
from evflow.store import timers as timer_rows
from evflow.store.interface import Store, WriteTransaction

#: timers fired per transaction: what a tick holds in memory, and loses when killed
BATCH = 1000


@dataclass(slots=True)
class FireReport:
    """What a firing pass did: how many timers fired, the deliveries they owe, what failed."""

    fired: int = 0
    deliveries: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # rules that failed on a fired event: recorded with it (evflow show), the timer is fired
    warnings: list[str] = field(default_factory=list)


def fire_due(
    store: Store,
    ruleset: RuleSet,
    now: datetime | None = None,
    *,
    on_batch: Callable[[Sequence[Outcome]], None] | None = None,
    batch: int = BATCH,
) -> FireReport:
    """Fire every timer due at ``now`` (default: the clock); ``on_batch`` gets each committed
    batch's outcomes (one per fired emit timer), so a caller can stream them."""
    until = format_time((now or now_utc()).astimezone(UTC))
    appender = Appender(ruleset)
    report = FireReport()
    if not timer_rows.any_due(store, until):
        return report
    position: tuple[str, int] | None = None
    careful = False  # after a batch failed as a whole: again, each timer in a savepoint
    while True:
        done = _Batch()
        try:
            with store.write() as tx:
                timers = timer_rows.due(tx, until, position, batch)
                _fire_batch(tx, appender, timers, done, careful)
        except _BatchFailed:
            careful = True
            continue
        careful = False
        report.fired += done.fired
        report.deliveries += done.deliveries
        report.errors += done.errors
        report.warnings += done.warnings
        if timers:
            position = (timers[-1].due, timers[-1].id)
        if on_batch is not None and done.outcomes:
            on_batch(done.outcomes)
        if len(timers) < batch:
            return report


@dataclass(slots=True)
class _Batch:
    fired: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _BatchFailed(Exception):
    """A timer of a batch fired without savepoints failed: the batch is undone, to be fired again
    one savepoint per timer."""


def _fire_batch(
    tx: WriteTransaction,
    appender: Appender,
    timers: Sequence[TimerRecord],
    done: _Batch,
    careful: bool,
) -> None:
    """Fire ``timers`` in ``tx``. Fast by default (one identity lookup and one status update for
    the whole batch); ``careful``: each in a savepoint, so one that fails stays pending alone."""
    events = {t.id: fired_event(t.body) for t in timers if t.body is not None}
    tx.known_absent([(e["source"], e["id"]) for e in events.values()])
    marks: list[tuple[int | None, int | None, int]] = []

    def fire(timer: TimerRecord) -> None:
        event = events.get(timer.id)
        if event is None:  # run/http: a delivery owed to the cause, due now
            delivery = tx.add_delivery(
                timer.cause_seq, timer.cause_id, timer.rule, timer.action, timer.kind
            )
            marks.append((None, delivery, timer.id))
            done.deliveries.append(delivery)
            return
        outcome = appender.append(tx, event)
        marks.append((outcome.event["seq"], None, timer.id))
        if not outcome.duplicate:  # a log that already held it: nothing new to show
            done.outcomes.append(outcome)
            done.deliveries += [d["id"] for d in outcome.deliveries]
            done.warnings += [f"timer {timer.id}: {w}" for w in outcome.warnings()]

    try:
        for timer, failed in each_in_savepoint(tx, timers, fire, isolate=careful):
            if isinstance(failed, EvflowError):
                done.errors.append(
                    f"timer {timer.id} (rule {timer.rule}, due {timer.due}): {failed.message}"
                )
    except EvflowError as exc:  # not careful: the batch is undone, to be fired one by one
        raise _BatchFailed from exc
    timer_rows.mark_fired(tx, marks)
    done.fired = len(marks)
