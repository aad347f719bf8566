"""Routing decisions: what an event owes when it is recorded, as values (no storage).

Every rule whose trigger, window and filter match gets its actions: an ``emit`` becomes a derived
event (:func:`derive`), a ``run`` or ``http`` action a delivery. :mod:`evflow.services.append`
writes them in the append transaction.
"""

from __future__ import annotations

from typing import Any

from evflow.core.events import Event
from evflow.core.expressions import Bindings, EvaluationError
from evflow.core.rules import EmitAction, Match
from evflow.core.structs import dataclass, field
from evflow.core.text import sha1
from evflow.errors import EvflowError

# derived ids are a function of (cause, rule, action), so routing the same cause twice (an import
# of a log that already holds the derived events, say) finds them already recorded
_DERIVED_NAMESPACE = bytes.fromhex("6f1f6a523c2e4d8e9a518f3f0c6b7a10")


class ActionFailed(EvflowError):
    """An emit action could not be rendered (its template failed on this event)."""


@dataclass(slots=True)
class Outcome:
    """What appending one event did: derived events and deliveries, depth-first."""

    event: Event
    duplicate: bool = False
    derived: list[Event] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)  # every judged rule, for dry runs
    timers: list[dict[str, Any]] = field(default_factory=list)  # set: {id, rule, action, due, key}
    cancelled: list[dict[str, Any]] = field(default_factory=list)  # timers its events cancelled
    # (rule, message) for each rule that failed on an event of this append (filter, template,
    # CEL budget, chain depth): recorded with the event, never a reason to lose it
    failures: list[tuple[str, str]] = field(default_factory=list)
    history: bool = False  # recorded as history (from another evflow log): no rule ran

    def triggered_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"kind": "event", "rule": e.get("evflowrule"), "event": e} for e in self.derived
        ]
        out += [{"kind": "delivery", **d} for d in self.deliveries]
        out += [{"kind": "timer", **t} for t in self.timers]
        out += [{"kind": "cancelled_timer", **t} for t in self.cancelled]
        return out

    @property
    def filter_errors(self) -> list[Match]:
        return [m for m in self.matches if m.filter_error is not None]

    def warnings(self) -> list[str]:
        """One line per rule that failed on this append (for stderr)."""
        return [f"rule {rule}: {message}" for rule, message in self.failures]


def derived_id(cause: Event, rule: str, index: int) -> str:
    """A UUIDv5 (RFC 9562) of the cause's identity, the rule and the action index.

    Built from SHA-1 rather than the uuid module: emit is on every script's hot path, and
    importing uuid costs more than this function.
    """
    name = f"{cause['source']}\n{cause['id']}\n{rule}\n{index}".encode()
    h = sha1(_DERIVED_NAMESPACE + name).hexdigest()
    # the first 16 bytes, with version 5 in the 13th digit and the RFC 4122 variant in the 17th
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def derive(
    cause: Event,
    rule: str,
    index: int,
    action: EmitAction,
    variables: Bindings,
    known_id: str | None = None,
) -> Event:
    """The event an emit action derives from ``cause`` (its id, time and lineage fixed);
    ``known_id``: its :func:`derived_id`, when the caller made it already."""
    try:
        raw = action.render(variables, rule)
    except EvaluationError as exc:
        where = f" ({action.location})" if action.location else ""
        raise ActionFailed(
            f"rule {rule}: emit {action.type}{where}: {exc} (on {cause['type']} {cause['id']})"
        ) from None
    # Built directly rather than through normalize(): every part is evflow's own (the type
    # was checked when the rules loaded, render() made data an object and subject a string).
    source = raw["source"]
    if not source or "\x00" in source or "\x00" in raw.get("subject", ""):
        raise ActionFailed(
            f"rule {rule}: emit {action.type}: source or subject renders empty or with NUL"
        )
    event: Event = {
        "specversion": "1.0",
        "id": known_id or derived_id(cause, rule, index),
        "source": source,
        "type": raw["type"],
        # a derived event happens when its cause did: replays and back-fills judge alike
        "time": cause["time"],
    }
    if "subject" in raw:
        event["subject"] = raw["subject"]
    event["datacontenttype"] = "application/json"
    event["causationid"] = cause["id"]
    event["correlationid"] = cause.get("correlationid", cause["id"])
    event["evflowrule"] = rule
    event["data"] = raw["data"]
    return event
