"""The storage interface every backend implements, and the values it returns.

A backend is one small class: it knows how to connect, how to begin a write transaction that
serializes appends (so that ``seq`` order is commit order), and its dialect of SQL. Everything else
(the queries) lives once in :mod:`evflow.store.sql`, and one contract suite
(``tests/test_store_contract.py``) runs against every backend.
"""

from __future__ import annotations

from typing import Any

from evflow.core.structs import dataclass, field


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of appending one event."""

    seq: int
    recordedtime: str
    duplicate: bool  # source+id were already in the log: nothing new was recorded


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a read returns; every field narrows, ``None`` means any."""

    since_seq: int = 0  # exclusive: events with seq > since_seq
    until_seq: int | None = None  # inclusive
    since_time: str | None = None  # inclusive, canonical UTC text (events.format_time)
    until_time: str | None = None  # exclusive
    types: tuple[str, ...] = ()  # exact types or globs (order.*)
    subject: str | None = None
    correlationid: str | None = None
    limit: int | None = None
    reverse: bool = False  # newest first (the limit then takes the last ones)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One run/http action owed to one event by one rule (the outbox row)."""

    id: int
    event_seq: int
    event_id: str
    rule: str
    action: int
    kind: str
    status: str  # pending | running | done | failed | dead
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str
    updated_at: str
    lease_owner: str | None = None
    lease_until: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.event_id}:{self.rule}:{self.action}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "event_seq": self.event_seq,
            "rule": self.rule,
            "action": self.action,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
        }


DELIVERY_STATUSES = ("pending", "running", "done", "failed", "dead")
TIMER_STATUSES = ("pending", "fired", "cancelled")


@dataclass(slots=True)
class Stats:
    events: int = 0
    first_time: str | None = None
    last_time: str | None = None
    last_seq: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    timers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIMER_STATUSES, 0))
