"""Timers: an action due later than its cause (``after``/``at``), cancellable by key. Pure.

A timed action of a matching rule is not taken when its cause is appended: it becomes a timer,
recorded with the cause, that fires when a tick reaches its due time. An event whose
type is in the action's ``cancel_on`` cancels that action's pending timers with the same key,
provided it happened before they were due. Times are the events' own ``time``, never the clock of
the machine that appends them, so a back-filled log gets the same timers as the live one.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from evflow.core.events import Event, format_time, parse_time
from evflow.core.expressions import Bindings, EvaluationError, Template
from evflow.core.records import TIMER_STATUSES
from evflow.core.structs import dataclass
from evflow.errors import EvflowError

__all__ = [
    "TIMER_STATUSES",
    "TimerError",
    "TimerRecord",
    "Timing",
    "cancels_before",
    "fired_event",
    "preview",
    "preview_cancel",
]


class TimerError(EvflowError):
    """A timer could not be set for this cause (a due time that is no time, or before the cause);
    recorded as a rule error, like a failing filter."""


@dataclass(frozen=True, slots=True)
class Timing:
    """When a timed action is due and what cancels it (the action's ``after``/``at`` keys)."""

    after: float | None = None  # seconds after the cause's time
    after_text: str = ""  # as written, for display ("14d")
    at: Template | None = None  # renders to an RFC 3339 time
    key: Template | None = None  # None: the cause's subject
    cancel_on: tuple[str, ...] = ()
    cancel_key: Template | None = None  # None: the cancelling event's subject

    def describe(self) -> str:
        """``after 14d`` or ``at ${{ data.trial_end }}``."""
        return f"after {self.after_text}" if self.at is None else f"at {self.at.source}"

    def due(self, cause: Event, variables: Bindings) -> str:
        """The due time (canonical UTC text); raises :class:`TimerError`."""
        start = parse_time(cause["time"])
        if self.at is None:
            try:
                return format_time(start + timedelta(seconds=self.after or 0.0))
            except OverflowError:
                raise TimerError(
                    f"after {self.after_text}: the due time is past year 9999"
                ) from None
        try:
            value = self.at.render(variables)
        except EvaluationError as exc:
            raise TimerError(f"at: {exc}") from None
        try:
            when = parse_time(value) if isinstance(value, str) else None
        except ValueError:
            when = None
        if when is None:
            raise TimerError(f"at: expected an RFC 3339 time, got {json.dumps(value)[:80]}")
        if when < start:
            raise TimerError(f"at {format_time(when)} is before its cause's time {cause['time']}")
        return format_time(when)

    def key_of(self, cause: Event, variables: Bindings) -> str | None:
        """The timer's key: ``key`` rendered, else the cause's subject; raises TimerError."""
        return _key(self.key, cause, variables, "key")

    def cancel_key_of(self, event: Event, variables: Bindings) -> str | None:
        """The key a cancelling event cancels: ``cancel_key`` rendered, else its subject."""
        return _key(self.cancel_key, event, variables, "cancel_key")


def _key(template: Template | None, event: Event, variables: Bindings, what: str) -> str | None:
    if template is None:
        return event.get("subject")
    try:
        value = template.render(variables)
    except EvaluationError as exc:
        raise TimerError(f"{what}: {exc}") from None
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def cancels_before(time: str) -> str:
    """The time a cancelling event's timers must be due after, as due times are written: to the
    microsecond. An event's time may carry nanoseconds, and ``…00.000000001Z`` sorts before
    ``…00.000000Z`` as text although it is after it; cut to the microsecond it is not before a
    timer due at ``…00.000000Z`` (due times are whole microseconds, so nothing else changes)."""
    return format_time(parse_time(time))


def preview(
    timing: Timing, kind: str, index: int, cause: Event, variables: Bindings
) -> dict[str, Any]:
    """What a timed action would set for ``cause`` (``rules explain``): due time and key, or the
    rule error it would record instead."""
    out: dict[str, Any] = {"action": index, "kind": kind}
    try:
        out["due"] = timing.due(cause, variables)
        out["key"] = timing.key_of(cause, variables)
    except TimerError as exc:
        out["error"] = exc.message
    out["cancel_on"] = list(timing.cancel_on)
    return out


def preview_cancel(
    rule: str, index: int, timing: Timing, event: Event, variables: Bindings
) -> dict[str, Any]:
    """Which pending timers ``event`` would cancel: the rule, the action and the key."""
    out: dict[str, Any] = {"rule": rule, "action": index}
    try:
        out["key"] = timing.cancel_key_of(event, variables)
    except TimerError as exc:
        out["error"] = exc.message
    return out


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """One timer as stored: a timed action owed to one cause, and what became of it."""

    id: int
    rule: str
    action: int
    kind: str  # emit | run | http
    status: str  # pending | fired | cancelled
    due: str
    key: str | None
    cause_seq: int
    cause_id: str
    event_seq: int | None = None  # emit: the event it appended (or found already recorded)
    delivery_id: int | None = None  # run/http: the delivery it became
    cancelled_by: int | None = None  # the cancelling event's seq; None when cancelled by hand
    body: str | None = None  # emit: the event it appends, rendered when the cause was recorded

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape of a timer (``evflow timers --format json``)."""
        return {
            "id": self.id,
            "rule": self.rule,
            "action": self.action,
            "kind": self.kind,
            "status": self.status,
            "due": self.due,
            "key": self.key,
            "cause_seq": self.cause_seq,
            "cause_id": self.cause_id,
            "event_seq": self.event_seq,
            "delivery_id": self.delivery_id,
            "cancelled_by": self.cancelled_by,
        }


def fired_event(body: str) -> Event:
    """The event a fired emit timer appends (its id, time = due time and lineage are in it)."""
    event: Event = json.loads(body)
    return event
