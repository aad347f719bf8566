"""The JSON shapes that evflow shows (``--format json`` and ``evflow serve`` alike), built from
core values, so that the command line and the HTTP API print the same thing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from evflow.core.events import Event, format_time
from evflow.core.records import Delivery, Stats
from evflow.core.timers import TimerRecord


def action_text(action: Any) -> str:
    """An action in one line: ``emit TYPE``, ``run [argv]``, ``http METHOD URL`` (no password),
    and when it is a timer, ``after 14d`` or ``at ${{ data.when }}``."""
    text = _action_base(action)
    timing = getattr(action, "timing", None)
    return text if timing is None else f"{text} {timing.describe()}"


def _action_base(action: Any) -> str:
    if action.kind == "emit":
        return f"emit {action.type}"
    if action.kind == "run":
        argv = action.argv.source if hasattr(action.argv, "source") else None
        return f"run {json.dumps(argv) if argv is not None else ''}".strip()
    from evflow.core.text import redact

    url = getattr(action.url, "source", None)
    return f"http {action.method} {redact(str(url)) if url is not None else ''}".strip()


def rule_json(rule: Any, at: datetime) -> dict[str, Any]:
    """``rules list``: a rule, its window and its state at ``at``."""
    return {
        "name": rule.name,
        "description": rule.description,
        "on": list(rule.on),
        "if": rule.condition.source if rule.condition is not None else None,
        "window": rule.window.describe() if rule.window is not None else "always",
        "actions": [action_text(a) for a in rule.actions],
        "state": rule.state_at(at),
        "file": str(rule.location) if rule.location else None,
    }


def schedule_json(schedule: Any, at: datetime, last_tick: datetime | None) -> dict[str, Any]:
    """``schedules list``: a schedule, its state at ``at`` and its next occurrence."""
    from evflow.core.cron import next_occurrence, state_at

    upcoming = next_occurrence(schedule, at)
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "emit": schedule.emit,
        "window": schedule.window.describe() if schedule.window is not None else "always",
        "catchup": schedule.catchup,
        "state": state_at(schedule, at),
        "next": upcoming.local.isoformat() if upcoming else None,
        "next_utc": format_time(upcoming.utc) if upcoming else None,
        "last_tick": format_time(last_tick) if last_tick else None,
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    """``deliveries``: one delivery as listed."""
    return {
        "id": d.id, "event_id": d.event_id, "rule": d.rule, "action": d.action,
        "kind": d.kind, "status": d.status, "attempts": d.attempts, "last_error": d.last_error,
    }  # fmt: skip


def show_json(
    event: Event,
    tree: Iterable[tuple[int, Event]],
    deliveries: Iterable[Delivery],
    rule_errors: Sequence[tuple[str, str]] = (),
    timers: Iterable[TimerRecord] = (),
    cancelled: Iterable[TimerRecord] = (),
) -> dict[str, Any]:
    """``show``: an event, the tree of events it caused, its deliveries, its rule errors, the
    timers it set and those it cancelled."""
    return {
        "event": event,
        "caused": [{"depth": d, "event": e} for d, e in tree],
        "deliveries": [d.to_json() for d in deliveries],
        "rule_errors": [{"rule": r, "message": m} for r, m in rule_errors],
        "timers": [t.to_json() for t in timers],
        "cancelled_timers": [t.to_json() for t in cancelled],
    }


def stats_json(
    display_url: str, s: Stats, positions: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    """``stats``: counts, and every reader's position and lag (projections, bridges)."""
    return {
        "database": display_url,
        "events": s.events,
        "last_seq": s.last_seq,
        "first_time": s.first_time,
        "last_time": s.last_time,
        "by_type": s.by_type,
        "deliveries": s.deliveries,
        "timers": s.timers,
        "projections": {k: v for k, v in positions.items() if not k.startswith("bridge:")},
        "bridges": {k: v for k, v in positions.items() if k.startswith("bridge:")},
    }
