"""Delivery state and control: deliveries, retry, redeliver, and the worker (run)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from evflow.cli.context import Globals
from evflow.cli.options import FormatOpt, SinceOpt, SummaryFormatOpt, UntilOpt
from evflow.cli.output import Column
from evflow.core.positions import parse_position
from evflow.core.records import DELIVERY_STATUSES
from evflow.core.reports import delivery_json
from evflow.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("deliveries")(deliveries)
    app.command("retry")(retry)
    app.command("redeliver")(redeliver)
    app.command("run")(run)


def deliveries(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="pending, running, done, failed or dead.")
    ] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule's deliveries.")] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most N deliveries.")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Newest first.")] = False,
    format: FormatOpt = None,
) -> None:
    """List deliveries (run/http actions owed to events) with status, attempts and last error."""
    g: Globals = ctx.obj
    if status is not None and status not in DELIVERY_STATUSES:
        raise UsageError(
            f"--status: expected one of {', '.join(DELIVERY_STATUSES)} (got {status!r})"
        )
    fmt = g.out.resolve(format)
    rows = g.flow(read_only=True).stream_deliveries(
        status=status, rule=rule, limit=limit, reverse=reverse
    )
    shaped = (delivery_json(d) for d in rows)
    with g.out.paged():
        if fmt == "json":
            g.out.json_stream(shaped)
        elif fmt == "jsonl":
            g.out.jsonl(shaped)
        else:
            g.out.table(
                [Column("id", key=True), Column("event", key=True), Column("rule", key=True),
                 "action", Column("status", key=True, status=True), "attempts", "next attempt",
                 "last error"],
                (
                    (d.id, d.event_seq, d.rule, f"{d.action} {d.kind}", d.status, d.attempts,
                     d.next_attempt_at if d.status in ("pending", "failed") else "", d.last_error)
                    for d in rows
                ),
            )  # fmt: skip


def retry(
    ctx: typer.Context,
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="[ID]...", help="Delivery ids.")
    ] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead delivery.")] = False,
) -> None:
    """Put failed or dead deliveries back to pending (fresh attempts); 'evflow run' sends them."""
    g: Globals = ctx.obj
    if not ids and not dead:
        raise UsageError("retry: name delivery ids or use --dead", hint="see 'evflow deliveries'")
    from evflow.core.positions import check_position

    for delivery_id in ids or []:
        check_position(delivery_id, "ID")

    report = g.flow().retry(ids or [], dead=dead)
    for delivery_id, why in report.skipped:
        g.out.warn(f"evflow: skipped delivery {delivery_id}: {why}")
    g.out.line(
        f"{len(report.requeued)} deliver{'y' if len(report.requeued) == 1 else 'ies'} pending"
    )
    if ids and len(report.requeued) < len(ids):
        raise typer.Exit(1)


def redeliver(
    ctx: typer.Context,
    rule: Annotated[str, typer.Option("--rule", help="The rule whose actions to deliver again.")],
    since: SinceOpt = None,
    until: UntilOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what it would do.")] = False,
    format: SummaryFormatOpt = None,
) -> None:
    """Deliver a rule's run/http actions for past events it matches now; skip what succeeded."""
    g: Globals = ctx.obj
    since_seq, since_time = parse_position(since, "--since")
    until_seq, until_time = parse_position(until, "--until")
    flow = g.flow()
    try:
        report = flow.redeliver(
            rule, since_seq=since_seq or 0, until_seq=until_seq, since_time=since_time,
            until_time=until_time, dry_run=dry_run,
        )  # fmt: skip
    except KeyboardInterrupt:
        g.out.warn(
            "evflow redeliver: interrupted; nothing created or reset (it is all or nothing):"
            " run it again"
        )
        raise typer.Exit(130) from None
    summary = {
        "rule": report.rule,
        "dry_run": dry_run,
        "matched": report.matched,
        "created": len(report.created or []),
        "reset": len(report.reset or []),
        "skipped_done": report.skipped_done,
        "skipped_running": report.skipped_running,
        "ids": sorted((report.created_ids or []) + (report.reset or [])),
    }
    fmt = g.out.resolve(format, piped="table")
    if fmt == "json":
        g.out.json(summary)
    elif fmt == "jsonl":
        g.out.jsonl([summary])
    else:
        verb = "would create" if dry_run else "created"
        g.out.line(
            f"rule {rule}: {report.matched} matching event(s); {verb} {summary['created']}"
            f" deliveries, {'would reset' if dry_run else 'reset'} {summary['reset']} to pending,"
            f" skipped {report.skipped_done} done and {report.skipped_running} running"
        )
        if not dry_run and (summary["created"] or summary["reset"]):
            g.out.line("run them with 'evflow run --once' (or a running 'evflow run')")


def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Drain what is due, then exit.")] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between polls when idle.", min=0.01)
    ] = 1.0,
    lease: Annotated[
        float,
        typer.Option(help="Claim lease in seconds (at least each action's timeout + 30).", min=1),
    ] = 60.0,
    worker_id: Annotated[
        str | None, typer.Option("--worker-id", help="Name in the lease (default host:pid:random).")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a delivery failed or went dead.")
    ] = False,
    format: Annotated[
        str | None, typer.Option("--format", help="line (default) or jsonl: one per attempt.")
    ] = None,
) -> None:
    """A worker: dispatch pending and due deliveries until Ctrl-C (which lets the action finish)."""
    g: Globals = ctx.obj
    fmt = g.out.resolve(format, piped="line", choices=("line", "jsonl"))
    fmt = "line" if fmt == "table" else fmt
    import threading

    from evflow.cli.signals import stop_on_signals

    flow = g.flow()

    failed: list[int] = []
    in_hand: list[int] = []

    def started(delivery_id: int | None) -> None:
        in_hand[:] = [] if delivery_id is None else [delivery_id]

    def report(result: Any) -> None:
        if result.status in ("failed", "dead"):
            failed.append(result.id)
        if fmt == "jsonl":
            g.out.jsonl([result.to_json()])
        else:
            g.out.line(result.describe())
        g.out.stdout.flush()

    def invalid_rules(exc: Exception) -> None:
        for problem in getattr(exc, "problems", []):
            g.out.warn(str(problem))
        g.out.warn("evflow run: the changed rules are invalid; keeping the rules loaded before")

    def first_stop() -> None:
        if in_hand:
            g.out.warn(f"evflow run: finishing delivery {in_hand[0]}, Ctrl-C again to abort")
        else:
            g.out.warn("evflow run: stopping")
        g.out.stderr.flush()

    worker_id = worker_id or flow.new_worker_id()
    with stop_on_signals(threading.Event(), on_first=first_stop) as stop:
        if not once:
            g.out.warn(
                f"evflow run: worker {worker_id} polling every {interval:g}s"
                " (Ctrl-C stops after the action in hand)"
            )
            g.out.stderr.flush()
        try:
            flow.run_worker(
                once=once, interval=interval, lease=lease, worker_id=worker_id, stop=stop,
                on_result=report, warn=g.out.warn, on_invalid_rules=invalid_rules,
                on_start=started,
            )  # fmt: skip
        except KeyboardInterrupt:
            what = f"delivery {in_hand[0]} released (pending again)" if in_hand else "stopped"
            g.out.warn(f"evflow run: aborted; {what}")
            raise typer.Exit(130) from None
    if strict and failed:
        raise typer.Exit(1)
