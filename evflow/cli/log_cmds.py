"""Commands over the log: init, emit, import, log, show, stats."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from evflow.cli.context import Globals
from evflow.cli.emit import EmitOptions, run_emit
from evflow.cli.options import (
    FormatOpt,
    ReportFormatOpt,
    SinceOpt,
    SummaryFormatOpt,
    UntilOpt,
)
from evflow.cli.parsing import parse_position
from evflow.core.records import EventFilter
from evflow.errors import InvalidEvent, NotFound, UsageError


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("emit")(emit)
    app.command("import")(import_)
    app.command("log")(log)
    app.command("show")(show)
    app.command("stats")(stats)


def init(ctx: typer.Context) -> None:
    """Create the database, and the rules/ folder with the example rules, their tests and the
    script they run (safe to run twice: existing files are kept)."""
    g: Globals = ctx.obj
    flow = g.flow()
    flow.last_seq()  # creates the database
    written = flow.install_example()
    g.out.line(f"database: {flow.display_url}")
    g.out.line(f"rules:    {flow.rules_dir}/")
    for path in written:
        g.out.line(f"wrote     {path}")


def emit(
    ctx: typer.Context,
    type: Annotated[str, typer.Argument(help="Event type, e.g. order.placed.")],
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Event data: a JSON object, @file.json, or - for stdin."),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="key=value (value parsed as JSON when it parses)."),
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Entity key, e.g. a member id.")] = None,
    source: Annotated[str | None, typer.Option(help="Producer URI (default evflow:cli).")] = None,
    time_: Annotated[
        str | None, typer.Option("--time", help="Event time, RFC 3339 (default now).")
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", help="Event id; re-emitting a known id records nothing.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would happen; record nothing.")
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="With --dry-run: judge windows as of this time.")
    ] = None,
    no_dispatch: Annotated[
        bool, typer.Option("--no-dispatch", help="Record deliveries; leave them to 'evflow run'.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a rule or a delivery fails.")
    ] = False,
    format: SummaryFormatOpt = None,
) -> None:
    """Append one event, run what its rules trigger, and print its seq and id."""
    g: Globals = ctx.obj
    opts = EmitOptions(
        type=type,
        data=data,
        fields=field or [],
        subject=subject,
        source=source,
        time=time_,
        id=id,
        dry_run=dry_run,
        at=at,
        no_dispatch=no_dispatch,
        strict=strict,
        format=format,
    )
    raise typer.Exit(run_emit(opts, g.db, g.rules, g.out))


def _read_lines(path: str, spooled: BinaryIO | None = None) -> Iterator[tuple[str, Any]]:
    from evflow.core.events import parse_json

    name = "<stdin>" if path == "-" else path
    # bytes, decoded line by line: one line that is not UTF-8 is that line's problem
    stream: BinaryIO
    if spooled is not None:  # stdin, kept in a temporary file to be read twice
        spooled.seek(0)
        stream = spooled
    elif path == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        for number, raw in enumerate(stream, 1):
            where = f"{name}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, InvalidEvent("line", f"not UTF-8 text (byte {exc.start + 1})", where)
                continue
            if not line.strip():
                continue
            try:
                value = parse_json(line)
            except json.JSONDecodeError as exc:
                yield (
                    where,
                    InvalidEvent("line", f"malformed JSON: {exc.msg} (column {exc.colno})", where),
                )
                continue
            if isinstance(value, list):
                # a CloudEvents JSON batch (application/cloudevents-batch+json) on one line
                for index, item in enumerate(value, 1):
                    yield f"{where}[{index}]", item
            else:
                yield where, value
    finally:
        if stream is not sys.stdin.buffer and stream is not spooled:
            stream.close()


IMPORT_CHUNK = 10_000  # events per transaction of an import without --atomic


def _rereadable(path: str, stack: ExitStack) -> Callable[[], Iterator[tuple[str, Any]]]:
    """The lines of ``path`` as a function that reads them afresh (stdin is spooled first)."""
    if path != "-":
        return lambda: _read_lines(path)
    import shutil
    import tempfile

    spool = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - the stack closes it
    shutil.copyfileobj(sys.stdin.buffer, spool)
    return lambda: _read_lines(path, spool)


def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="JSON lines of events, or - for stdin.")],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Record the good lines, report every bad one.")
    ] = False,
    no_dispatch: Annotated[
        bool, typer.Option("--no-dispatch", help="Record deliveries without running them.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a rule or a delivery fails.")
    ] = False,
    reroute: Annotated[
        bool,
        typer.Option(
            "--reroute",
            help="Run the rules on lines of an evflow log's export too (default: history).",
        ),
    ] = False,
    atomic: Annotated[
        bool,
        typer.Option(
            "--atomic",
            help="One transaction for the whole file (other writers wait until it ends).",
        ),
    ] = False,
    format: SummaryFormatOpt = None,
) -> None:
    """Append many events (JSON lines) in file order; known ids are skipped.

    Every line is checked first (a bad one records nothing), then the events are written
    10,000 to a transaction, so other writers get their turn; if it stops part way, run it
    again to complete it. --atomic: all in one transaction. Lines carrying seq/recordedtime
    (an 'evflow log' export) are history: recorded as they are, no rule runs on them, unless
    --reroute. A line without id gets one derived from its content."""
    g: Globals = ctx.obj
    flow = g.flow()
    total = None
    if file != "-" and g.out.is_terminal and Path(file).is_file():
        with open(file, "rb") as fh:
            total = sum(1 for _ in fh)
    started = time.perf_counter()
    with ExitStack() as stack:
        lines: Any = _read_lines(file) if atomic else _rereadable(file, stack)
        chunk = None if atomic else IMPORT_CHUNK
        if g.out.is_terminal and file != "-":
            from rich.progress import Progress

            with Progress(console=g.out.console(stderr=True), transient=True) as bar:
                task = bar.add_task("importing", total=total)
                result = flow.import_events(
                    lines,
                    skip_invalid=skip_invalid,
                    reroute=reroute,
                    progress=lambda n: bar.update(task, completed=n),
                    chunk=chunk,
                )
        else:
            result = flow.import_events(
                lines, skip_invalid=skip_invalid, reroute=reroute, chunk=chunk
            )
    failures: list[str] = []
    if result.deliveries and not no_dispatch:
        failures = flow.dispatch(result.deliveries)
    elapsed = time.perf_counter() - started
    for problem in result.invalid:
        g.out.warn(f"evflow: skipped {problem}")
    for warning in result.rule_failures:
        g.out.warn(f"evflow: warning: {warning}")
    for failure in failures:
        g.out.warn(f"evflow: delivery failed: {failure}")
    summary = {
        "recorded": result.recorded,
        "history": result.history,
        "duplicates": result.duplicates,
        "derived": result.derived,
        "deliveries": len(result.deliveries),
        "invalid": len(result.invalid),
        "last_seq": result.last_seq,
        "seconds": round(elapsed, 3),
    }
    fmt = g.out.resolve(format, piped="table")
    if fmt == "table":
        g.out.line(
            f"recorded {result.recorded} event(s), {result.duplicates} already in the log,"
            f" {result.derived} derived, {len(result.deliveries)} deliveries,"
            f" {len(result.invalid)} invalid, in {elapsed:.2f}s"
        )
        if result.history or result.history_seen:
            g.out.line(
                f"{result.history + result.history_seen} line(s) were history (an evflow log's"
                " export): recorded as they are, no rule ran (--reroute to run them)"
            )
    elif fmt == "json":
        g.out.json(summary)
    else:
        g.out.jsonl([summary])
    failed = failures or result.rule_failures
    status = 1 if (failed and strict) or (result.invalid and not result.recorded) else 0
    raise typer.Exit(status)


def log(
    ctx: typer.Context,
    type: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Event type or glob (repeatable).")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject.")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most N events.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep waiting for new events until Ctrl-C.")
    ] = False,
    format: FormatOpt = None,
) -> None:
    """List events in seq order; --format jsonl output is valid 'evflow import' input."""
    g: Globals = ctx.obj
    fmt = g.out.resolve(format)
    since_seq, since_time = parse_position(since, "--since")
    until_seq, until_time = parse_position(until, "--until")
    flt = EventFilter(
        since_seq=since_seq or 0,
        until_seq=until_seq,
        since_time=since_time,
        until_time=until_time,
        types=tuple(type or ()),
        subject=subject,
        limit=limit,
    )
    flow = g.flow()
    from evflow.cli import render

    if not follow:
        events = list(flow.events(flt)) if fmt != "jsonl" else flow.events(flt)
        render.events(g.out, events, fmt)
        return
    position = flt.since_seq
    shown = 0
    try:
        while True:
            batch = list(flow.events(_after(flt, position)))
            for event in batch:
                render.events(g.out, [event], "jsonl" if fmt != "table" else "line")
                position = event["seq"]
                shown += 1
                if limit is not None and shown >= limit:
                    return
            g.out.stdout.flush()
            if not batch:
                time.sleep(0.2)
    except KeyboardInterrupt:
        return


def _after(flt: EventFilter, position: int) -> EventFilter:
    from evflow.core.structs import replace

    return replace(flt, since_seq=position, limit=None)


def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID|SEQ", help="An event id or seq.")],
    format: ReportFormatOpt = None,
) -> None:
    """One event, its deliveries, and the tree of events it caused."""
    g: Globals = ctx.obj
    fmt = g.out.resolve(format, piped="json")
    flow = g.flow()
    event = flow.get(ref)
    if event is None:
        raise NotFound(f"no event with id or seq {ref!r}", hint="list events with 'evflow log'")
    tree = flow.caused_tree(event)
    deliveries = flow.deliveries(event_seq=event["seq"])
    from evflow.cli import render

    seq = event["seq"]
    render.show(
        g.out, event, tree, deliveries, fmt, flow.rule_errors(seq),
        list(flow.timers(cause_seq=seq)), list(flow.timers(cancelled_by=seq)),
    )  # fmt: skip


def stats(ctx: typer.Context, format: ReportFormatOpt = None) -> None:
    """Counts: events, by type, first and last time, deliveries and timers by status."""
    g: Globals = ctx.obj
    fmt = g.out.resolve(format, piped="json")
    flow = g.flow()
    from evflow.core.reports import stats_json

    value = stats_json(flow.display_url, flow.stats(), flow.positions())
    from evflow.cli import render

    render.stats(g.out, value, fmt)
