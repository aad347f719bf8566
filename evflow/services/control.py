"""Delivery control: ``evflow retry`` (failed and dead deliveries back to pending) and
``evflow redeliver`` (owe a rule's actions to past events it matches now)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evflow.core.rules import HttpAction, RuleSet, RunAction
from evflow.store import outbox

if TYPE_CHECKING:
    from evflow.store.interface import Store


@dataclass(slots=True)
class RetryReport:
    requeued: list[int]
    skipped: list[tuple[int, str]]  # (id, why)


def retry(store: Store, ids: Iterable[int] = (), *, dead: bool = False) -> RetryReport:
    """Failed and dead deliveries (``ids``, or every dead one) back to pending, with fresh attempts.

    Done ones are left alone (``redeliver`` is the explicit way to run an action again) and so are
    running ones (a worker has them).
    """
    wanted = list(ids)
    if dead:
        wanted += [i for i in outbox.dead_ids(store) if i not in wanted]
    found = {d.id: d for d in store.deliveries(ids=wanted)} if wanted else {}
    report = RetryReport([], [])
    for delivery_id in wanted:
        d = found.get(delivery_id)
        if d is None:
            report.skipped.append((delivery_id, "no such delivery"))
        elif d.status in ("done", "running"):
            report.skipped.append((delivery_id, f"it is {d.status}"))
        else:
            report.requeued.append(delivery_id)
    if report.requeued:
        outbox.requeue(store, report.requeued, store.clock())
    return report


@dataclass(slots=True)
class RedeliverReport:
    rule: str
    matched: int = 0  # past events the rule matches now
    created: list[tuple[int, int]] | None = None  # (event seq, action) without a delivery before
    created_ids: list[int] | None = None
    reset: list[int] | None = None  # pending, failed or dead ones, due again now
    skipped_done: int = 0
    skipped_running: int = 0

    def __post_init__(self) -> None:
        self.created = self.created or []
        self.created_ids = self.created_ids or []
        self.reset = self.reset or []


def redeliver(
    store: Store,
    ruleset: RuleSet,
    rule_name: str,
    *,
    since_seq: int = 0,
    until_seq: int | None = None,
    since_time: str | None = None,
    until_time: str | None = None,
    dry_run: bool = False,
) -> RedeliverReport:
    """Owe ``rule``'s run/http actions to past events it matches now (type, window, filter).

    An event with no delivery for an action gets one; a pending, failed or dead one is due again
    with fresh attempts; one that succeeded is skipped, and so is one a worker is running. Emit
    actions are not redone: the events they appended are already in the log. Timed actions are
    left out: they are owed through timers, which redelivering does not set.
    """
    from evflow.core.records import EventFilter
    from evflow.errors import NotFound, UsageError

    rule = ruleset.rule(rule_name)
    if rule is None:
        raise NotFound(f"--rule: no rule named {rule_name!r}", hint="see 'evflow rules list'")
    # a timed action is owed through its timer, never as a delivery right away
    indexes = [
        i
        for i, a in enumerate(rule.actions)
        if isinstance(a, RunAction | HttpAction) and a.timing is None
    ]
    if not indexes:
        raise UsageError(
            f"--rule: rule {rule_name} has no run or http action to redeliver"
            " (timed actions, with after or at, are not redelivered)"
        )
    flt = EventFilter(
        since_seq=since_seq, until_seq=until_seq, since_time=since_time, until_time=until_time,
        types=rule.on,
    )  # fmt: skip
    events = [(e["seq"], e["id"]) for e in store.read(flt) if rule.judge(e).matched]
    store.end_read()
    report = RedeliverReport(rule_name, matched=len(events))
    assert report.created is not None and report.reset is not None
    existing = outbox.for_events(store, rule_name, [seq for seq, _ in events])
    for seq, _ in events:
        for index in indexes:
            d = existing.get((seq, index))
            if d is None:
                report.created.append((seq, index))
            elif d.status == "done":
                report.skipped_done += 1
            elif d.status == "running":
                report.skipped_running += 1
            else:
                report.reset.append(d.id)
    if dry_run or not (report.created or report.reset):
        return report
    ids = dict(events)
    with store.write() as tx:
        report.created_ids = [
            tx.add_delivery(seq, ids[seq], rule_name, index, rule.actions[index].kind)
            for seq, index in report.created
        ]
        outbox.requeue(tx, report.reset, store.clock())
    return report
