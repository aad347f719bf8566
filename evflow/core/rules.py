"""Rule, schedule and projection definitions, and how a rule judges an event. Pure: no I/O.

Definitions are built by :mod:`evflow.rulefiles.builder` from YAML; everything here is a frozen
value with its expressions already compiled, so matching an event costs a dict lookup and a CEL
evaluation.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from evflow.core.events import Event, event_data, parse_time
from evflow.core.expressions import Bindings, EvaluationError, Expression, Template
from evflow.core.structs import dataclass, field

if TYPE_CHECKING:
    from evflow.core.tables import TableSpec  # imported with the projections that have a table
    from evflow.core.timers import Timing
    from evflow.core.windows import Window  # imported with the rules that have one (zoneinfo)

MAX_CHAIN_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Location:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 3
    backoff: float = 10.0  # seconds before the first retry
    max_backoff: float = 600.0


@dataclass(frozen=True, slots=True)
class EmitAction:
    """Append a derived event, in the same transaction as its cause."""

    type: str
    data: Template | None = None  # None: an empty object; else any JSON value it renders
    subject: Template | None = None
    source: Template | None = None
    location: Location | None = None
    timing: Timing | None = None  # after/at: a timer, due later (evflow.core.timers)
    kind: Literal["emit"] = "emit"

    def render(self, variables: Mapping[str, Any] | Bindings, rule: str) -> dict[str, Any]:
        """The derived event's attributes (before normalization); raises EvaluationError."""
        data = self.data.render(variables) if self.data is not None else {}
        if isinstance(data, bytes | bytearray):
            # CloudEvents data may be any JSON value; bytes would need data_base64
            raise EvaluationError(f"emit {self.type}: data must render to a JSON value, not bytes")
        out: dict[str, Any] = {"type": self.type, "data": data}
        if self.subject is not None:
            subject = self.subject.render(variables)
            if subject is not None:
                # a non-string subject reads as it would in text: true, 3, {"k":1}
                out["subject"] = subject if isinstance(subject, str) else json.dumps(subject)
        out["source"] = (
            str(self.source.render(variables)) if self.source is not None else f"evflow:rule/{rule}"
        )
        return out


@dataclass(frozen=True, slots=True)
class RunAction:
    """Run a program (an argv list, never a shell) after the commit."""

    argv: Template  # renders to a list of strings
    env: Template | None = None
    cwd: str | None = None  # resolved against the rule file's folder by the loader
    timeout: float = 60.0
    stdin: Template | None = None  # None: the event JSON
    emit_result: str | None = None
    location: Location | None = None
    timing: Timing | None = None  # after/at: a timer, due later (evflow.core.timers)
    kind: Literal["run"] = "run"


@dataclass(frozen=True, slots=True)
class HttpAction:
    """Call a webhook after the commit; 2xx is success."""

    url: Template
    method: str = "POST"
    headers: Template | None = None
    body: Template | None = None  # None: the event JSON
    timeout: float = 10.0
    location: Location | None = None
    timing: Timing | None = None  # after/at: a timer, due later (evflow.core.timers)
    kind: Literal["http"] = "http"


Action = EmitAction | RunAction | HttpAction


@dataclass(frozen=True, slots=True)
class Match:
    """Whether a rule matches an event, and if not, which test said no and why."""

    rule: Rule
    matched: bool
    stage: str | None  # None when matched; else "type", "window" or "filter"
    reason: str
    filter_error: str | None = None


def type_matches(patterns: tuple[str, ...], etype: str) -> bool:
    if etype in patterns:  # most rules name their type: no pattern matching for them
        return True
    return any(fnmatch.fnmatchcase(etype, pattern) for pattern in patterns)


def event_variables(event: Event) -> dict[str, Any]:
    """What CEL sees: ``data`` (any JSON value, the bytes of ``data_base64``, or null when the
    event has none) and ``event`` (the envelope)."""
    return {"data": event_data(event), "event": event}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    on: tuple[str, ...]
    actions: tuple[Action, ...]
    condition: Expression | None = None
    window: Window | None = None
    retry: Retry = field(default_factory=Retry)
    description: str = ""
    location: Location | None = None

    @property
    def file(self) -> str:
        return self.location.file if self.location else ""

    def judge(
        self,
        event: Event,
        variables: Mapping[str, Any] | Bindings | None = None,
        at: datetime | None = None,
    ) -> Match:
        """Type, then window (against the event's own ``time``, or ``at``), then filter."""
        if not type_matches(self.on, event["type"]):
            return Match(self, False, "type", f"type {event['type']} is not {' or '.join(self.on)}")
        if self.window is not None:
            check = self.window.check(at or _event_time(event))
            if not check.ok:
                return Match(self, False, "window", check.reason)
        if self.condition is not None:
            try:
                value = self.condition.evaluate_bool(variables or event_variables(event))
            except EvaluationError as exc:
                return Match(self, False, "filter", f"filter error: {exc}", filter_error=str(exc))
            if not value:
                return Match(self, False, "filter", f"filter {self.condition.source} is false")
        return Match(self, True, None, "matches")

    def state_at(self, t: datetime) -> str:
        """``active``, ``pending`` (before its window) or ``expired`` (after it)."""
        return "active" if self.window is None else self.window.state_at(t)


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    cron: str
    timezone: str
    emit: str
    data: Template | None = None
    subject: Template | None = None
    window: Window | None = None
    catchup: str = "latest"  # latest | all | none
    max_catchup: int = 100
    description: str = ""
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Handler:
    """What a projection does with one event type."""

    kind: str  # upsert | merge | delete | ops | python
    condition: Expression | None = None
    set: Template | None = None  # renders to a map
    inc: Template | None = None
    append: Template | None = None
    unset: tuple[str, ...] = ()
    python: str | None = None  # package.module:function
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Projection:
    name: str
    key: Expression
    handlers: tuple[tuple[str, Handler], ...]  # (type or glob, handler), in file order
    definition_hash: str  # changes with the fold (not with the table): a stale checkpoint rebuilds
    description: str = ""
    location: Location | None = None
    table: TableSpec | None = None  # also kept as a typed SQL table

    def handler_for(self, etype: str) -> Handler | None:
        for pattern, handler in self.handlers:
            if pattern == etype or fnmatch.fnmatchcase(etype, pattern):
                return handler
        return None


@dataclass(slots=True)
class RuleSet:
    """Everything the rule files define, with a type index for fast matching."""

    rules: tuple[Rule, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    projections: tuple[Projection, ...] = ()
    directory: str = ""
    files: tuple[str, ...] = ()
    _by_type: dict[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)
    _cancels: dict[str, tuple[tuple[Rule, int, Timing], ...]] = field(
        default_factory=dict, repr=False
    )

    def rules_for(self, etype: str) -> tuple[Rule, ...]:
        """Rules whose trigger names this type (window and filter not yet judged)."""
        hit = self._by_type.get(etype)
        if hit is None:
            hit = tuple(r for r in self.rules if type_matches(r.on, etype))
            self._by_type[etype] = hit
        return hit

    def cancellers_for(self, etype: str) -> tuple[tuple[Rule, int, Timing], ...]:
        """The timed actions (rule, action index, timing) whose ``cancel_on`` names this type."""
        hit = self._cancels.get(etype)
        if hit is None:
            hit = tuple(
                (rule, index, action.timing)
                for rule in self.rules
                for index, action in enumerate(rule.actions)
                if action.timing is not None and type_matches(action.timing.cancel_on, etype)
            )
            self._cancels[etype] = hit
        return hit

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def projection(self, name: str) -> Projection | None:
        return next((p for p in self.projections if p.name == name), None)

    def schedule(self, name: str) -> Schedule | None:
        return next((s for s in self.schedules if s.name == name), None)


def _event_time(event: Event) -> datetime:
    return parse_time(event["time"])
