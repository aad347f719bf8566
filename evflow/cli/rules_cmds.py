"""``evflow rules …``: validate, list, explain (and, from the tooling module, test/schema/graph)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from evflow.cli.context import Globals
from evflow.cli.render import render_problems
from evflow.core.positions import parse_time_option
from evflow.core.reports import action_text, rule_json
from evflow.errors import UsageError

rules_app = typer.Typer(help="Check, list and explain rules.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")


def parse_at(value: str | None, option: str = "--at") -> datetime | None:
    return None if value is None else parse_time_option(value, option)


@rules_app.command("validate")
def validate(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Rule files or folders (default: the rules folder).")
    ] = None,
    format: Annotated[
        str,
        typer.Option("--format", help="text, json (a list of problems) or github (annotations)."),
    ] = "text",
) -> None:
    """Check rule files; exit 0 when valid, 3 when not. Every problem in every file is reported."""
    g: Globals = ctx.obj
    if format not in ("text", "json", "github"):
        raise UsageError(f"--format: expected text, json or github (got {format!r})")
    flow = g.flow()
    targets: list[Path] = []
    for path in paths or [flow.rules_dir]:
        if path.is_dir():
            targets.extend(flow.rule_files(path))
        elif path.exists():
            targets.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    problems = flow.validate_rules(targets)
    render_problems(problems, format, g.out)
    errors = [p for p in problems if p.severity == "error"]
    if format == "text":
        warnings = len(problems) - len(errors)
        verdict = "invalid" if errors else "valid"
        g.out.warn(
            f"{len(targets)} file(s) {verdict}: {len(errors)} error(s), {warnings} warning(s)"
        )
    raise typer.Exit(3 if errors else 0)


@rules_app.command("list")
def list_(
    ctx: typer.Context,
    at: Annotated[
        str | None, typer.Option("--at", help="State as of this time (default now).")
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help="table or json.")] = None,
) -> None:
    """Every rule: trigger, filter, window, actions, and its state (active, pending, expired)."""
    g: Globals = ctx.obj
    from evflow.core.events import now_utc

    when = parse_at(at) or now_utc()
    fmt = g.out.resolve(format, piped="json", choices=("table", "json"))
    rows = [rule_json(r, when) for r in g.flow().ruleset.rules]
    if fmt == "json":
        g.out.json(rows)
        return
    g.out.table(
        ["name", "on", "if", "window", "actions", "state"],
        (
            [
                r["name"],
                ", ".join(r["on"]),
                r["if"] or "",
                r["window"],
                "; ".join(r["actions"]),
                r["state"],
            ]
            for r in rows
        ),
    )


@rules_app.command("explain")
def explain(
    ctx: typer.Context,
    type: Annotated[str, typer.Argument(help="The event type.")],
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Event data: JSON, @file or -.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="KEY=VALUE kept as text (repeatable)."),
    ] = None,
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="key=value (repeatable).")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Event subject.")] = None,
    time_: Annotated[str | None, typer.Option("--time", help="Event time (default now).")] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Judge windows as of this time instead.")
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help="table or json.")] = None,
) -> None:
    """For one event: each rule, and why it matches or not (type, window, filter)."""
    g: Globals = ctx.obj
    from evflow.cli.emit import EmitOptions, build_event
    from evflow.core.events import normalize
    from evflow.core.expressions import bind
    from evflow.core.rules import event_variables
    from evflow.core.timers import preview, preview_cancel
    from evflow.errors import InvalidEvent

    fmt = g.out.resolve(format, piped="json", choices=("table", "json"))
    opts = EmitOptions(
        type=type, data=data, fields=field or [], sets=set_ or [], subject=subject, time=time_
    )
    try:
        event = normalize(build_event(opts))
    except InvalidEvent as exc:
        raise UsageError(str(exc)) from None
    when = parse_at(at)
    variables = bind(event_variables(event))
    results: list[dict[str, Any]] = []
    ruleset = g.flow().ruleset
    for rule in ruleset.rules:
        m = rule.judge(event, variables, at=when)
        timed = [(i, a.kind, a.timing) for i, a in enumerate(rule.actions) if a.timing]
        results.append(
            {
                "rule": rule.name,
                "matched": m.matched,
                "stage": m.stage,
                "reason": m.reason,
                "actions": [action_text(a) for a in rule.actions] if m.matched else [],
                "timers": [preview(t, k, i, event, variables) for i, k, t in timed]
                if m.matched
                else [],
            }
        )
    cancels = [
        preview_cancel(rule.name, i, t, event, variables)
        for rule, i, t in ruleset.cancellers_for(type)
    ]
    if fmt == "json":
        g.out.json({"event": event, "rules": results, "cancels": cancels})
        return
    g.out.line(f"{event['type']} at {event['time']}" + (f" (windows judged at {at})" if at else ""))
    for r in results:
        verdict = "MATCH" if r["matched"] else f"no ({r['stage']})"
        g.out.line(f"  {r['rule']}: {verdict}: {r['reason']}")
        timers = {t["action"]: t for t in r["timers"]}
        for index, action in enumerate(r["actions"]):
            g.out.line(f"      -> {action}{_timer_text(timers.get(index))}")
    for c in cancels:
        what = c["error"] if "error" in c else f"key {c['key']}"
        g.out.line(
            f"  cancels pending timers of rule {c['rule']} action {c['action']} ({what})"
            " that are due after this event's time"
        )


def _timer_text(timer: dict[str, Any] | None) -> str:
    if timer is None:
        return ""
    if "error" in timer:
        return f": no timer: {timer['error']}"
    text = f": due {timer['due']}, key {timer['key']}"
    if timer["cancel_on"]:
        text += f", cancelled by {', '.join(timer['cancel_on'])}"
    return text
