"""What one attempt at one delivery came to (:class:`Result`), as the worker reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Result:
    """One attempt at one delivery."""

    id: int
    event_id: str
    rule: str
    action: int
    kind: str
    status: str  # done | failed | dead | lost (the lease lapsed and another worker took it)
    attempts: int
    max_attempts: int
    error: str | None = None
    next_attempt_at: str | None = None
    derived: tuple[str, ...] = ()  # ids of events appended from emit_result
    follow: tuple[int, ...] = ()  # deliveries those events created, run next by run_ids

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def describe(self) -> str:
        """One line for people: what ran and how it went."""
        what = (
            f"delivery {self.id} ({self.kind} action {self.action} of rule {self.rule},"
            f" event {self.event_id})"
        )
        if self.status == "done":
            return f"{what}: done"
        if self.status == "lost":
            return f"{what}: lease lapsed before it finished; another worker took it over"
        text = f"{what}: {self.error}"
        if self.status == "dead":
            return (
                f"{text}; dead after {self.attempts} attempt(s)"
                f" (bring it back with 'evflow retry {self.id}')"
            )
        attempt = f"attempt {self.attempts} of {self.max_attempts}"
        return f"{text}; {attempt}, next at {self.next_attempt_at}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "rule": self.rule,
            "action": self.action,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.error,
            "next_attempt_at": self.next_attempt_at,
            "derived": list(self.derived),
        }
