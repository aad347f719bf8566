"""``evflow timers [--status] [--rule] [--key]`` and ``evflow timers cancel ID…``."""

from __future__ import annotations

from typing import Annotated

import typer

from evflow.cli.context import Globals
from evflow.cli.options import FormatOpt
from evflow.cli.output import Column
from evflow.core.records import TIMER_STATUSES
from evflow.errors import UsageError

timers_app = typer.Typer(
    help="List timers (pending, fired, cancelled); 'evflow timers cancel ID…' cancels by hand.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(timers_app, name="timers")


@timers_app.callback()
def timers(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending, fired or cancelled.")] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule's timers.")] = None,
    key: Annotated[str | None, typer.Option(help="Only timers with this key.")] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most N timers.")] = None,
    format: FormatOpt = None,
) -> None:
    """Timers in id order: rule, action, status, due time, key, cause, what became of them.

    Example: evflow timers --status pending --rule trial-ends --format json
    """
    if ctx.invoked_subcommand is not None:
        return
    g: Globals = ctx.obj
    if status is not None and status not in TIMER_STATUSES:
        raise UsageError(f"--status: expected one of {', '.join(TIMER_STATUSES)} (got {status!r})")
    fmt = g.out.resolve(format)
    # a listing: never creates a database, and goes through the pager on a terminal
    rows = g.flow(read_only=True).timers(status=status, rule=rule, key=key, limit=limit)
    with g.out.paged():
        if fmt == "json":
            g.out.json([t.to_json() for t in rows])
        elif fmt == "jsonl":
            g.out.jsonl(t.to_json() for t in rows)
        else:
            g.out.table(
                [Column("id", key=True), Column("rule", key=True), "action",
                 Column("status", key=True, status=True), "due", "key", "cause", "outcome"],
                (
                    [t.id, t.rule, f"{t.action} {t.kind}", t.status, t.due, t.key, t.cause_seq,
                     _outcome(t.event_seq, t.delivery_id, t.cancelled_by, t.status)]
                    for t in rows
                ),
            )  # fmt: skip


def _outcome(
    event_seq: int | None, delivery_id: int | None, cancelled_by: int | None, status: str
) -> str:
    if event_seq is not None:
        return f"event seq {event_seq}"
    if delivery_id is not None:
        return f"delivery {delivery_id}"
    if status == "cancelled":
        return f"by seq {cancelled_by}" if cancelled_by is not None else "by hand"
    return ""


@timers_app.command("cancel")
def cancel(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Timer ids.")],
) -> None:
    """Cancel pending timers by hand (exit 1 when one is not pending or does not exist).

    Example: evflow timers cancel 12 13
    """
    g: Globals = ctx.obj
    outcome = g.flow().cancel_timers(ids)
    done = [i for i, why in outcome.items() if why is None]
    for timer_id, why in outcome.items():
        if why == "unknown":
            g.out.warn(f"evflow: no timer {timer_id}")
        elif why is not None:
            g.out.warn(f"evflow: timer {timer_id} is {why}, not pending: left as it is")
    g.out.line(f"{len(done)} timer(s) cancelled")
    if len(done) < len(outcome):
        raise typer.Exit(1)
