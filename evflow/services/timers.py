"""Firing timers: every pending timer due at or before ``now``, once each, in due-time order.

A batch at a time, under the store's write lock: the due timers are read (one indexed query), each
fires (an ``emit`` timer appends the event rendered when its cause was recorded: ``time`` = the due
time, ``id`` from (cause, rule, action), the cause's lineage; a ``run``/``http`` timer becomes a
delivery owed to its cause) and is marked fired, and the batch commits. Two tickers in two
processes therefore never fire a timer twice, a killed tick loses at most its uncommitted batch
(fired by the next tick), and memory stays flat however many timers are due.

One timer whose event cannot be appended (a rule reacting to it fails) is undone alone, stays
pending and is reported; the others fire.
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
from evflow.services.append import Appender
from evflow.store import timers as timer_rows
from evflow.store.interface import Store, WriteTransaction

#: timers fired per transaction: what a tick holds in memory, and loses when killed
BATCH = 500


@dataclass(slots=True)
class FireReport:
    """What a firing pass did: how many timers fired, the deliveries they owe, what failed."""

    fired: int = 0
    deliveries: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


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
    while True:
        outcomes: list[Outcome] = []
        with store.write() as tx:
            timers = timer_rows.due(tx, until, position, batch)
            for timer in timers:
                tx.savepoint()
                try:
                    outcome, deliveries = _fire(tx, appender, timer)
                except EvflowError as exc:
                    tx.rollback_to_savepoint()
                    report.errors.append(
                        f"timer {timer.id} (rule {timer.rule}, due {timer.due}): {exc.message}"
                    )
                    continue
                tx.release()
                report.fired += 1
                report.deliveries.extend(deliveries)
                if outcome is not None:
                    outcomes.append(outcome)
        if timers:
            position = (timers[-1].due, timers[-1].id)
        if on_batch is not None and outcomes:
            on_batch(outcomes)
        if len(timers) < batch:
            return report


def _fire(
    tx: WriteTransaction, appender: Appender, timer: TimerRecord
) -> tuple[Outcome | None, list[int]]:
    """Fire one timer inside the tick's transaction: the outcome of the event it appended (None
    for a run/http timer, or an event the log already held) and the deliveries it owes."""
    if timer.body is None:  # run/http: a delivery owed to the cause, due now
        delivery = tx.add_delivery(
            timer.cause_seq, timer.cause_id, timer.rule, timer.action, timer.kind
        )
        timer_rows.mark_fired(tx, timer.id, None, delivery)
        return None, [delivery]
    outcome = appender.append(tx, fired_event(timer.body))
    timer_rows.mark_fired(tx, timer.id, outcome.event["seq"], None)
    if outcome.duplicate:
        return None, []
    return outcome, [d["id"] for d in outcome.deliveries]
