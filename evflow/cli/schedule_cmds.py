"""``evflow tick`` and ``evflow schedules list|preview``: glue over the facade and the cron
maths of :mod:`evflow.core.cron`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import typer

from evflow.cli.context import Globals
from evflow.cli.output import Column
from evflow.core.positions import parse_time_option
from evflow.core.reports import schedule_json
from evflow.errors import NoDatabase, NotFound

schedules_app = typer.Typer(
    help="List schedules and preview their occurrences.", no_args_is_help=True
)

FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="table or json (default: table on a terminal, else json)."),
]


def register(app: typer.Typer) -> None:
    app.command("tick")(tick)
    app.add_typer(schedules_app, name="schedules")


def _time(value: str | None, option: str) -> datetime:
    from evflow.core.events import now_utc

    return now_utc() if value is None else parse_time_option(value, option)


def tick(
    ctx: typer.Context,
    now: Annotated[
        str | None,
        typer.Option("--now", help="Tick as if it were this time (RFC 3339; default: now)."),
    ] = None,
    no_dispatch: Annotated[
        bool, typer.Option("--no-dispatch", help="Record deliveries without running them.")
    ] = False,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", help="table, json or jsonl (default: table on a terminal, else jsonl)."
        ),
    ] = None,
) -> None:
    """Emit every schedule occurrence due since the last tick and fire every timer due by now,
    once each, even if run twice (or in two processes at once)."""
    g: Globals = ctx.obj

    when = _time(now, "--now")
    if when.year < 1000 or when.year > 9998:
        # schedules need room around the tick for their cron maths; a tick recorded that far
        # out would break every later tick
        from evflow.errors import UsageError

        raise UsageError(f"--now: {now} is out of range (years 1000 to 9998)")
    fmt = g.out.resolve(format, piped="jsonl")
    flow = g.flow()
    report = flow.tick_report(when)
    shown: list[Any] = []  # table and json print once, at the end; jsonl as it goes

    def show(outcomes: Sequence[Any]) -> None:
        if fmt == "jsonl":
            g.out.jsonl({**o.event, "triggered": o.triggered_json()} for o in outcomes)
        else:
            shown.extend(outcomes)

    show(report.outcomes)
    fired = flow.fire_timers(when, on_batch=show)  # in due order, a batch at a time
    deliveries = [d["id"] for o in report.outcomes for d in o.deliveries] + fired.deliveries
    failures = flow.dispatch(deliveries) if deliveries and not no_dispatch else []
    for failure in failures:
        g.out.warn(f"evflow: delivery failed: {failure}")
    if fmt == "table":
        g.out.table(
            [Column("seq", key=True), "time", Column("type", key=True), Column("id", key=True),
             "triggered"],
            (
                [o.event["seq"], o.event["time"], o.event["type"], o.event["id"],
                 len(o.derived) + len(o.deliveries)]
                for o in shown
            ),
        )  # fmt: skip
    elif fmt == "json":
        g.out.json([{**o.event, "triggered": o.triggered_json()} for o in shown])
    g.out.warn(
        f"{len(report.outcomes)} occurrence(s) emitted, {fired.fired} timer(s) fired"
        f" at {_iso(when)}"
    )
    for warning in report.warnings + fired.warnings:
        g.out.warn(f"evflow: warning: {warning}")
    errors = [str(e) for e in report.errors] + fired.errors
    for error in errors:
        g.out.warn(f"evflow: error: {error}")
    if errors:
        raise typer.Exit(1)


def _iso(t: datetime) -> str:
    from evflow.core.events import format_time

    return format_time(t)


@schedules_app.command("list")
def list_(
    ctx: typer.Context,
    at: Annotated[
        str | None, typer.Option("--at", help="State as of this time (default now).")
    ] = None,
    format: FormatOpt = None,
) -> None:
    """Every schedule: cron, zone, window, state (active, pending, expired), next occurrence."""
    g: Globals = ctx.obj

    when = _time(at, "--at")
    fmt = g.out.resolve(format, piped="json", choices=("table", "json"))
    flow = g.flow(read_only=True)
    try:
        last = flow.schedule_ticks()
    except NoDatabase:
        last = {}  # no log yet: nothing ticked (and nothing is created to say so)
    rows = [schedule_json(s, when, last.get(s.name)) for s in flow.ruleset.schedules]
    if fmt == "json":
        g.out.json(rows)
        return
    g.out.table(
        ["name", "cron", "timezone", "window", "state", "next", "last tick"],
        (
            [
                r["name"],
                r["cron"],
                r["timezone"],
                r["window"],
                r["state"],
                r["next"] or "-",
                r["last_tick"] or "-",
            ]
            for r in rows
        ),
    )


@schedules_app.command("preview")
def preview(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
    next: Annotated[int, typer.Option("--next", "-n", min=1, max=10000, help="How many.")] = 10,
    from_: Annotated[
        str | None, typer.Option("--from", help="Start after this time (default now).")
    ] = None,
    format: FormatOpt = None,
) -> None:
    """The next occurrences, in the schedule's zone and in UTC, with DST and window flags."""
    g: Globals = ctx.obj
    from evflow.core.cron import preview as compute

    start = _time(from_, "--from")
    fmt = g.out.resolve(format, piped="json", choices=("table", "json"))
    ruleset = g.flow().ruleset
    schedule = ruleset.schedule(name)
    if schedule is None:
        known = ", ".join(s.name for s in ruleset.schedules) or "none"
        raise NotFound(
            f"no schedule named '{name}' (known: {known})", hint="see 'evflow schedules list'"
        )
    rows = [
        {"local": o.local.isoformat(), "utc": _iso(o.utc), "flags": list(o.flags)}
        for o in compute(schedule, start, next)
    ]
    if fmt == "json":
        g.out.json(rows)
        return
    g.out.table(
        [f"local ({schedule.timezone})", "utc", "flags"],
        ([r["local"], r["utc"], ", ".join(r["flags"])] for r in rows),
    )
