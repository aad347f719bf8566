"""Appending: the one path by which events enter the log, with what their rules trigger.

Inside the append transaction, every rule whose trigger, window and filter match gets its actions
(:mod:`evflow.core.routing` decides): an ``emit`` appends a derived event right here (routed in
turn, up to :data:`~evflow.core.rules.MAX_CHAIN_DEPTH`), a ``run`` or ``http`` action gets a
delivery record (the outbox) that is dispatched after the commit. Because it all happens in one
transaction, an event is never recorded without what it owes.

``emit``, ``import``, schedule ticks, the dispatcher's ``emit_result``, the NATS bridge and rule
tests all append through :class:`Appender`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from evflow.core.events import (
    Event,
    check_json,
    check_outside_source,
    content_id,
    format_time,
    is_history,
    normalize,
    parse_time,
)
from evflow.core.expressions import Bindings, bind
from evflow.core.routing import Outcome, derive, derived_id
from evflow.core.rules import MAX_CHAIN_DEPTH, Action, EmitAction, Rule, RuleSet, event_variables
from evflow.core.timers import TimerError, Timing, cancels_before
from evflow.errors import ChainTooDeep, EvflowError, InvalidEvent, StorageUnavailable
from evflow.store import timers as timer_rows
from evflow.store.interface import WriteTransaction
from evflow.store.rows import encode_event

T = TypeVar("T")
R = TypeVar("R")


class Appender:
    """Appends events and what their rules trigger, inside a caller's write transaction."""

    def __init__(
        self,
        ruleset: RuleSet,
        at: datetime | None = None,
        encode: Callable[[Event], str] | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.at = at  # judge windows as of this time instead of each event's own
        # the JSON text of an event it appends (checked: normalized, or a derived event whose
        # data check_json passed); None: the store's encoder. An import passes orjson's
        # (evflow.core.jsontext), which emit does not load.
        self.encode = encode
        # derived ids already made (derivable), by (cause source, cause id, rule, action)
        self._ids: dict[tuple[str, str, str, int], str] = {}
        self._emits: dict[str, list[tuple[str, int]]] = {}  # type -> its untimed emit actions

    def derivable(self, events: list[Event]) -> list[str]:
        """The ids of the events the rules may derive from these events directly (whether their
        window and filter match or not): an import looks them up with its lines, not one by
        one as they are derived, and keeps them until the next call (derive needs them)."""
        ids = self._ids = {}
        emits = self._emits
        for event in events:
            if "recordedtime" in event:  # history: no rule runs on it
                continue
            etype = event["type"]
            actions = emits.get(etype)
            if actions is None:
                actions = emits[etype] = [
                    (rule.name, index)
                    for rule in self.ruleset.rules_for(etype)
                    for index, action in enumerate(rule.actions)
                    if action.timing is None and isinstance(action, EmitAction)
                ]
            for name, index in actions:
                ids[(event["source"], event["id"], name, index)] = derived_id(event, name, index)
        return list(ids.values())

    def routes(self, etype: str) -> bool:
        """Whether appending an event of this type judges rules or cancels timers; if not, the
        append reads only the row's columns of the event (and its text, when given)."""
        return bool(self.ruleset.rules_for(etype) or self.ruleset.cancellers_for(etype))

    def append(
        self, tx: WriteTransaction, event: Event, *, history: bool = False, body: str | None = None
    ) -> Outcome:
        """Append ``event`` (normalized) and everything it triggers.

        A rule that fails on an event (its filter, a template, CEL's budget, a chain deeper than
        the limit) never loses the event: the failure is recorded with it (``rule_errors``), a
        failed ``emit`` becomes a dead delivery of kind ``emit`` that ``evflow retry`` re-runs,
        and every other rule's effects are kept. ``history``: an event from another evflow log
        (an export), recorded as it is, with its ``recordedtime``, and no rule runs on it.
        ``body``: the event's JSON text, when the caller has it (see ``WriteTransaction.append``).
        """
        outcome = Outcome(event, history=history)
        if history:
            recordedtime = event.pop("recordedtime", None)
            appended = tx.append(event, recordedtime=recordedtime)
            event["seq"] = appended.seq
            event["recordedtime"] = appended.recordedtime
            if appended.duplicate:
                outcome.duplicate = True
                outcome.event = tx.recorded(appended.seq)
            return outcome
        self._append(tx, event, outcome, depth=0, body=body)
        return outcome

    def _append(
        self,
        tx: WriteTransaction,
        event: Event,
        outcome: Outcome,
        depth: int,
        body: str | None = None,
    ) -> None:
        if body is None and self.encode is not None:
            try:
                body = self.encode(event)
            except (TypeError, ValueError):
                body = None  # the store's encoder says what is wrong with it, as it always did
        appended = tx.append(event, body=body)
        event["seq"] = appended.seq
        event["recordedtime"] = appended.recordedtime
        if appended.duplicate:
            if depth == 0:
                # report what the log holds under that identity, not what was sent again
                outcome.duplicate = True
                outcome.event = tx.recorded(appended.seq)
            return
        if depth > 0:
            outcome.derived.append(event)
        cancellers = self.ruleset.cancellers_for(event["type"])
        candidates = self.ruleset.rules_for(event["type"])
        if not candidates and not cancellers:
            return
        # CEL converts bound values once per event, not once per rule
        variables = bind(event_variables(event))
        if cancellers:
            # before this event's own timers are set: an event never cancels what it starts
            self._cancel(tx, event, cancellers, variables, outcome)
        for rule in candidates:
            match = rule.judge(event, variables, at=self.at)
            outcome.matches.append(match)
            if not match.matched:
                if match.filter_error is not None:
                    tx.add_rule_error(appended.seq, rule.name, match.reason)
                    outcome.failures.append((rule.name, match.reason))
                continue
            for index, action in enumerate(rule.actions):
                if action.timing is not None:
                    try:
                        self._set_timer(tx, event, rule.name, index, action, variables, outcome)
                    except EvflowError as exc:  # the timed emit's event cannot be rendered
                        message = f"{action.kind} action {index}: {exc}"
                        message = message.replace(f"rule {rule.name}: ", "", 1)
                        tx.add_rule_error(appended.seq, rule.name, message)
                        outcome.failures.append((rule.name, message))
                elif isinstance(action, EmitAction):
                    try:
                        if depth + 1 > MAX_CHAIN_DEPTH:
                            raise ChainTooDeep(
                                f"emit {action.type}: chain of emitted events deeper than"
                                f" {MAX_CHAIN_DEPTH} (started by {outcome.event['type']}"
                                f" {outcome.event['id']}); stopped here",
                                hint="look for rules that emit each other's trigger"
                                " ('evflow rules validate' warns about cycles)",
                            )
                        made = self._ids.get((event["source"], event["id"], rule.name, index))
                        child = derive(event, rule.name, index, action, variables, made)
                        check_json(child["data"], "data")
                    except EvflowError as exc:
                        self._failed_emit(tx, event, appended.seq, rule.name, index, exc, outcome)
                        continue
                    self._append(tx, child, outcome, depth + 1)
                else:
                    delivery_id = tx.add_delivery(
                        appended.seq, event["id"], rule.name, index, action.kind
                    )
                    outcome.deliveries.append(
                        {
                            "id": delivery_id,
                            "event_id": event["id"],
                            "event_seq": appended.seq,
                            "rule": rule.name,
                            "action": index,
                            "type": action.kind,
                        }
                    )

    def _set_timer(
        self,
        tx: WriteTransaction,
        cause: Event,
        rule: str,
        index: int,
        action: Action,
        variables: Bindings,
        outcome: Outcome,
    ) -> None:
        """Record a timed action as a pending timer (an emit's event rendered now, from its
        cause); a due time that is no time or before the cause is a rule error instead."""
        timing = action.timing
        assert timing is not None
        try:
            due = timing.due(cause, variables)
            key = timing.key_of(cause, variables)
        except TimerError as exc:
            message = f"{action.kind} action {index}: {exc.message}"
            tx.add_rule_error(cause["seq"], rule, message)
            outcome.failures.append((rule, message))
            return
        body = None
        if isinstance(action, EmitAction):
            event = derive(cause, rule, index, action, variables)
            event["time"] = due  # it happens when it is due, not when its cause did
            body = encode_event(event)
        timer_id = timer_rows.add(
            tx, rule=rule, action=index, kind=action.kind, due=due, key=key,
            cause_seq=cause["seq"], cause_id=cause["id"], body=body,
        )  # fmt: skip
        if timer_id is not None:
            outcome.timers.append(
                {"id": timer_id, "rule": rule, "action": index, "due": due, "key": key}
            )

    def _cancel(
        self,
        tx: WriteTransaction,
        event: Event,
        cancellers: tuple[tuple[Rule, int, Timing], ...],
        variables: Bindings,
        outcome: Outcome,
    ) -> None:
        """Cancel the pending timers this event's key cancels, if it happened before they were
        due; a cancel_key that fails is a rule error (nothing is cancelled)."""
        for rule, index, timing in cancellers:
            try:
                key = timing.cancel_key_of(event, variables)
            except TimerError as exc:
                message = f"cancel_on of action {index}: {exc.message}"
                tx.add_rule_error(event["seq"], rule.name, message)
                outcome.failures.append((rule.name, message))
                continue
            if key is None:
                continue
            for timer in timer_rows.cancel_by_key(
                tx, rule.name, index, key, cancels_before(event["time"]), event["seq"]
            ):
                outcome.cancelled.append(
                    {"id": timer.id, "rule": rule.name, "action": index, "key": key,
                     "cause_seq": timer.cause_seq, "by_seq": event["seq"]}
                )  # fmt: skip

    @staticmethod
    def _failed_emit(
        tx: WriteTransaction,
        event: Event,
        seq: int,
        rule: str,
        index: int,
        exc: EvflowError,
        outcome: Outcome,
    ) -> None:
        """Record an emit action that failed on ``event``: a rule error shown by ``evflow
        show``, and a dead ``emit`` delivery that ``evflow retry`` re-runs once the rule is
        fixed (the derived event then gets the id, time and lineage it would have had)."""
        message = str(exc).removeprefix(f"rule {rule}: ")
        tx.add_rule_error(seq, rule, message)
        tx.add_delivery(seq, event["id"], rule, index, "emit", failed=message)
        outcome.failures.append((rule, message))

    def append_each(
        self,
        tx: WriteTransaction,
        items: Iterable[tuple[str, Event | InvalidEvent]],
        *,
        isolate: bool,
        bodies: Mapping[str, str] | None = None,
    ) -> Iterator[tuple[str, Outcome | EvflowError]]:
        """Append many events in ``tx``, in order; yields ``(where, outcome or error)``.

        ``isolate``: each event in a savepoint, so one that fails (invalid, a rule failing, a
        chain too deep) is undone alone and yielded as its error while the others are recorded.
        Otherwise the first failure raises (``where: problem``) and the caller's transaction rolls
        everything back. ``bodies``: the JSON text of events by ``where``, when the caller has it
        (not for history lines, whose text holds their ``recordedtime``).
        """
        where = ""

        def step(item: tuple[str, Event | InvalidEvent]) -> Outcome:
            nonlocal where
            where, event = item
            if isinstance(event, InvalidEvent):
                raise event
            # a line of an evflow log's export carries its recordedtime: history
            history = "recordedtime" in event
            body = None if bodies is None or history else bodies.get(where)
            try:
                return self.append(tx, event, history=history, body=body)
            except EvflowError:
                raise
            except (ValueError, RecursionError) as exc:
                raise InvalidEvent("event", f"cannot be recorded: {exc}", where) from None

        try:
            for (at, _), outcome in each_in_savepoint(tx, items, step, isolate=isolate):
                yield at, outcome
        except (InvalidEvent, StorageUnavailable):  # named already / not this line's doing
            raise
        except EvflowError as exc:  # not isolated: the first failure, named by its line
            raise EvflowError(f"{where}: {exc}") from None


def each_in_savepoint(
    tx: WriteTransaction,
    items: Iterable[T],
    step: Callable[[T], R],
    *,
    isolate: bool,
) -> Iterator[tuple[T, R | EvflowError]]:
    """The one "savepoint per item" loop: ``step`` each item in ``tx``, in order, yielding
    ``(item, result)``. ``isolate``: each in a savepoint, so one whose step raises an
    :class:`EvflowError` is undone alone and yielded with that error while the others stay;
    otherwise the error propagates and the caller's transaction rolls everything back."""
    for item in items:
        if isolate:
            tx.savepoint()
        try:
            result = step(item)
        except EvflowError as exc:
            if not isolate:
                raise
            tx.rollback_to_savepoint()
            yield item, exc
            continue
        if isolate:
            tx.release()
        yield item, result


def normalized_chunks(
    tx: WriteTransaction,
    lines: Iterable[tuple[str, Any]],
    chunk: int = 500,
    *,
    reroute: bool = False,
    checked: bool = False,
    derivable: Callable[[list[Event]], list[str]] | None = None,
) -> Iterator[tuple[str, Event | InvalidEvent]]:
    """Raw lines normalized (or their :class:`InvalidEvent`), a chunk at a time, with one lookup
    per chunk of which identities the log already holds (instead of one per event).

    A line that carries ``seq``/``recordedtime`` is history (an export of an evflow log): it keeps
    its ``recordedtime`` (which tells :meth:`Appender.append_each` to record it as it is) and may
    carry evflow's own sources; ``reroute`` treats it as a new event instead. Any other line may
    not claim an ``evflow:`` source. A line without ``id`` gets one derived from its content
    (:func:`~evflow.core.events.content_id`), so importing a file twice records it once.
    ``checked``: the lines are already normalized events (an import's checking pass made them).
    ``derivable``: the ids of the events a line's rules may derive (:meth:`Appender.derivable`),
    looked up with the lines'.
    """
    pending: list[tuple[str, Event | InvalidEvent]] = []

    def flush() -> Iterator[tuple[str, Event | InvalidEvent]]:
        events = [e for _, e in pending if isinstance(e, dict)]
        ids = () if derivable is None else derivable(events)
        tx.known_absent([(e["source"], e["id"]) for e in events], ids)
        yield from pending
        pending.clear()

    for where, raw in lines:
        if checked or isinstance(raw, InvalidEvent):
            pending.append((where, raw))
        else:
            try:
                pending.append((where, normalize_line(raw, where, reroute)))
            except InvalidEvent as exc:
                pending.append((where, exc))
        if len(pending) >= chunk:
            yield from flush()
    yield from flush()


def normalize_line(raw: Any, where: str, reroute: bool) -> Event:
    if isinstance(raw, dict) and raw.get("id") is None and "type" in raw:
        raw = {**raw, "id": content_id(raw)}
    exported = isinstance(raw, dict) and is_history(raw)
    history = exported and not reroute
    if not exported:
        check_outside_source(raw, where)
    event = normalize(raw, where=where)
    if history:
        recorded = raw.get("recordedtime")
        if recorded is None:
            recorded = event["time"]  # seq without recordedtime: the best the line tells
        elif not isinstance(recorded, str):
            raise InvalidEvent("recordedtime", "must be an RFC 3339 string", where)
        else:
            try:
                recorded = format_time(parse_time(recorded))
            except ValueError as exc:
                raise InvalidEvent("recordedtime", str(exc), where) from None
        event["recordedtime"] = recorded
    return event


__all__ = ["Appender", "Outcome", "normalized_chunks"]
