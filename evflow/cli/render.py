"""How events, trees and counts look in each format."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from evflow.cli.output import Column, Output
from evflow.core.events import Event
from evflow.core.records import Delivery
from evflow.core.text import github_escape, github_property
from evflow.core.timers import TimerRecord
from evflow.errors import Problem


def _summary(event: Event) -> str:
    data = event.get("data")
    if isinstance(data, dict):
        text = ", ".join(f"{k}={v}" for k, v in list(data.items())[:4])
    elif "data_base64" in event:
        text = f"<{len(event['data_base64']) * 3 // 4 - event['data_base64'].count('=')} bytes>"
    elif "data" in event:  # any other JSON value, shown as JSON
        import json

        text = json.dumps(data, ensure_ascii=False)
    else:
        text = ""
    return text if len(text) <= 60 else text[:57] + "..."


def events(out: Output, items: Iterable[Event], fmt: str) -> None:
    if fmt == "jsonl":
        out.jsonl(items)
    elif fmt == "json":
        out.json_stream(items)
    elif fmt == "line":
        for e in items:
            out.line(
                f"{e['seq']:>6}  {e['time']}  {e['type']}  {e.get('subject') or ''}  {_summary(e)}"
            )
    else:
        out.table(
            [Column("seq", key=True), "time", Column("type", key=True), "subject", "data"],
            ([e["seq"], e["time"], e["type"], e.get("subject"), _summary(e)] for e in items),
        )


def show(
    out: Output,
    event: Event,
    tree: Sequence[tuple[int, Event]],
    deliveries: Sequence[Delivery],
    fmt: str,
    rule_errors: Sequence[tuple[str, str]] = (),
    timers: Sequence[TimerRecord] = (),
    cancelled: Sequence[TimerRecord] = (),
) -> None:
    """``timers``: those the event set; ``cancelled``: those it cancelled."""
    if fmt in ("json", "jsonl"):
        from evflow.core.reports import show_json

        value = show_json(event, tree, deliveries, rule_errors, timers, cancelled)
        if fmt == "json":
            out.json(value)
        else:
            out.jsonl([value])
        return
    out.json(event)
    if deliveries:
        out.line("")
        out.line("deliveries:")
        for d in deliveries:
            err = f"  last error: {d.last_error}" if d.last_error else ""
            out.line(
                f"  #{d.id} rule {d.rule} action {d.action} ({d.kind}): {out.status(d.status)},"
                f" {d.attempts} attempt(s){err}"
            )
    if rule_errors:
        out.line("")
        out.line("rules that failed on it (a filter or an action; the event is recorded):")
        for rule, message in rule_errors:
            out.line(f"  {rule}: {message}")
    if timers:
        out.line("")
        out.line("timers:")
        for t in timers:
            then = {
                "pending": "",
                "fired": f" -> seq {t.event_seq}"
                if t.event_seq
                else f" -> delivery {t.delivery_id}",
                "cancelled": f" by seq {t.cancelled_by}" if t.cancelled_by else " by hand",
            }[t.status]
            out.line(
                f"  #{t.id} rule {t.rule} action {t.action} ({t.kind}) due {t.due}"
                f" key {t.key}: {t.status}{then}"
            )
    if cancelled:
        out.line("")
        out.line("cancelled timers:")
        for t in cancelled:
            out.line(
                f"  #{t.id} rule {t.rule} action {t.action} due {t.due} key {t.key}"
                f" (set by seq {t.cause_seq})"
            )
    if tree:
        out.line("")
        out.line("caused:")
        for depth, e in tree:
            out.line(
                f"{'  ' * depth}-> {e['type']} seq {e['seq']} id {e['id']}"
                f" (rule {e.get('evflowrule')})"
            )


def stats(out: Output, value: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        out.json(value)
        return
    if fmt == "jsonl":
        out.jsonl([value])
        return
    scalars = {k: v for k, v in value.items() if not isinstance(v, dict | list)}
    out.mapping({k: "" if v is None else v for k, v in scalars.items()})
    for key, sub in value.items():
        if not isinstance(sub, dict) or not sub:
            continue
        out.line("")
        if all(isinstance(v, dict) for v in sub.values()):  # readers: position and lag
            out.table(
                [key, "position", "lag"], ([k, v["position"], v["lag"]] for k, v in sub.items())
            )
        else:
            out.table([key, "count"], sorted(sub.items()))


def render_problems(problems: list[Problem], fmt: str, out: Any) -> None:
    if fmt == "json":
        out.json(
            [
                {
                    "file": p.file,
                    "line": p.line,
                    "column": p.column,
                    "rule": p.rule,
                    "severity": p.severity,
                    "message": p.message,
                }
                for p in problems
            ]
        )
    elif fmt == "github":
        for p in problems:
            level = "error" if p.severity == "error" else "warning"
            message = github_escape(p.message)
            where = f"file={github_property(p.file)},line={p.line},col={p.column}"
            out.line(f"::{level} {where}::{message}")
    else:
        for p in problems:
            out.line(str(p))
