"""Routing: what happens, inside the append transaction, when an event is recorded.

Every rule whose trigger, window and filter match gets its actions: an ``emit`` appends a derived
event right here (and that event is routed in turn, up to :data:`MAX_CHAIN_DEPTH`), a ``run`` or
``http`` action gets a delivery record (the outbox) that is dispatched after the commit. Because it
all happens in one transaction, an event is never recorded without what it owes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evflow.errors import ChainTooDeep, EvflowError
from evflow.events import Event
from evflow.expressions import Bindings, EvaluationError, bind
from evflow.rules import MAX_CHAIN_DEPTH, EmitAction, Match, RuleSet, event_variables
from evflow.store.sql import Transaction

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

    def triggered_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"kind": "event", "rule": e.get("evflowrule"), "event": e} for e in self.derived
        ]
        out += [{"kind": "delivery", **d} for d in self.deliveries]
        return out

    @property
    def filter_errors(self) -> list[Match]:
        return [m for m in self.matches if m.filter_error is not None]


def derived_id(cause: Event, rule: str, index: int) -> str:
    """A UUIDv5 (RFC 9562) of the cause's identity, the rule and the action index.

    Built from hashlib rather than the uuid module: emit is on every script's hot path, and
    importing uuid costs more than this function.
    """
    name = f"{cause['source']}\n{cause['id']}\n{rule}\n{index}".encode()
    digest = bytearray(hashlib.sha1(_DERIVED_NAMESPACE + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Router:
    def __init__(self, ruleset: RuleSet, at: datetime | None = None) -> None:
        self.ruleset = ruleset
        self.at = at  # judge windows as of this time instead of each event's own

    def append(self, tx: Transaction, event: Event) -> Outcome:
        """Append ``event`` (normalized) and everything it triggers; raises, rolling back all."""
        outcome = Outcome(event)
        self._append(tx, event, outcome, depth=0)
        return outcome

    def _append(self, tx: Transaction, event: Event, outcome: Outcome, depth: int) -> None:
        appended = tx.append(event)
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
        candidates = self.ruleset.rules_for(event["type"])
        if not candidates:
            return
        # CEL converts bound values once per event, not once per rule
        variables = bind(event_variables(event))
        for rule in candidates:
            match = rule.judge(event, variables, at=self.at)
            outcome.matches.append(match)
            if not match.matched:
                if match.filter_error is not None:
                    tx.add_rule_error(appended.seq, rule.name, match.reason)
                continue
            for index, action in enumerate(rule.actions):
                if isinstance(action, EmitAction):
                    if depth + 1 > MAX_CHAIN_DEPTH:
                        raise ChainTooDeep(
                            f"rule {rule.name}: chain of emitted events deeper than"
                            f" {MAX_CHAIN_DEPTH} (started by {outcome.event['type']}"
                            f" {outcome.event['id']}); nothing was recorded",
                            hint="look for rules that emit each other's trigger"
                            " ('evflow rules validate' warns about cycles)",
                        )
                    child = self._derive(event, rule.name, index, action, variables)
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

    def _derive(
        self,
        cause: Event,
        rule: str,
        index: int,
        action: EmitAction,
        variables: Bindings,
    ) -> Event:
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
            "id": derived_id(cause, rule, index),
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
