"""Commands over the log: init, emit, import, log, show, stats."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
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
from evflow.core.events import Event
from evflow.core.positions import parse_position
from evflow.core.records import EventFilter
from evflow.core.structs import replace
from evflow.errors import NotFound, UsageError


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("emit")(emit)
    app.command("import")(import_)
    app.command("log")(log)
    app.command("show")(show)
    app.command("stats")(stats)


def init(
    ctx: typer.Context,
    example: Annotated[
        bool,
        typer.Option("--example", help="Write the example rules even where rule files exist."),
    ] = False,
) -> None:
    """Create the database, and the rules/ folder with the example rules, their tests and the
    script they run (safe to run twice: existing files are kept; a rules folder that already
    holds rule files gets no example unless --example)."""
    g: Globals = ctx.obj
    flow = g.flow()
    flow.last_seq()  # creates the database
    existing = flow.rule_files() if flow.rules_dir.is_dir() else []
    written = flow.install_example() if example or not existing else []
    g.out.line(f"database: {flow.display_url}")
    g.out.line(f"rules:    {flow.rules_dir}/")
    for path in written:
        g.out.line(f"wrote     {path}")
    if existing and not example:
        g.out.line(
            f"kept      {len(existing)} rule file(s) already there; no example added"
            " (evflow init --example adds it)"
        )


def emit(
    ctx: typer.Context,
    type: Annotated[str, typer.Argument(help="Event type, e.g. order.placed.")],
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Event data: a JSON object, @file.json, or - for stdin."),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="KEY=VALUE, the value parsed as JSON when it parses."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="KEY=VALUE, the value kept as text (version=1.10)."),
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
        sets=set_ or [],
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
    from evflow.core.lines import parse_line

    for where, raw in _raw_lines(path, spooled):
        yield from parse_line(where, raw)


def _raw_lines(path: str, spooled: BinaryIO | None = None) -> Iterator[tuple[str, bytes]]:
    """``(FILE:LINE, bytes)`` of each line, not decoded: one line that is not UTF-8 is that
    line's problem (:func:`evflow.core.lines.parse_line`)."""
    name = "<stdin>" if path == "-" else path
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
            yield f"{name}:{number}", raw
    finally:
        if stream is not sys.stdin.buffer and stream is not spooled:
            stream.close()


IMPORT_CHUNK = 10_000  # events per transaction of an import without --atomic


class _Reread:
    """The lines of a file (or of stdin, spooled first) read afresh at each call; ``raw()``
    gives them undecoded, for a checking pass that another process shares."""

    def __init__(self, path: str, spool: BinaryIO | None = None) -> None:
        self.path = path
        self.spool = spool

    def __call__(self) -> Iterator[tuple[str, Any]]:
        return _read_lines(self.path, self.spool)

    def raw(self) -> Iterator[tuple[str, bytes]]:
        return _raw_lines(self.path, self.spool)


def _rereadable(path: str, stack: ExitStack) -> _Reread:
    """The lines of ``path``, to be read more than once: stdin, a pipe (``<(cmd)``) or any
    other file that is not a regular one is spooled first, since reading it again would find
    nothing."""
    import os
    import stat

    try:
        regular = path != "-" and stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        regular = True  # reading it says what is wrong with it
    if regular:
        return _Reread(path)
    import shutil
    import tempfile

    spool = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - the stack closes it
    if path == "-":
        shutil.copyfileobj(sys.stdin.buffer, spool)
    else:
        try:
            with open(path, "rb") as stream:
                shutil.copyfileobj(stream, spool)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    return _Reread(path, spool)


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
    from evflow.cli.progress import progress

    total = None
    if file != "-" and g.out.stderr.isatty() and Path(file).is_file():
        with open(file, "rb") as fh:
            total = sum(1 for line in fh if line.strip())
    started = time.perf_counter()
    before = flow.last_seq()
    try:
        with ExitStack() as stack, progress(g.out, "importing", total, "events") as phase:
            lines: Any = _read_lines(file) if atomic else _rereadable(file, stack)
            chunk = None if atomic else IMPORT_CHUNK
            result = flow.import_events(
                lines,
                skip_invalid=skip_invalid,
                reroute=reroute,
                progress=phase.update,
                chunk=chunk,
            )
    except KeyboardInterrupt:
        recorded = flow.last_seq() - before
        if recorded == 0:
            g.out.warn("evflow import: interrupted; nothing recorded: run it again")
        else:
            g.out.warn(
                f"evflow import: interrupted: {recorded} events recorded (seq {before + 1} to"
                f" {before + recorded}); run it again to complete it (ids already in the log"
                " are skipped)"
            )
        raise typer.Exit(130) from None
    failures: list[str] = []
    if result.deliveries and not no_dispatch:
        failures = _deliver(g, flow, result.recorded, result.deliveries)
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


def _deliver(g: Globals, flow: Any, recorded: int, ids: list[int]) -> list[str]:
    """Run the import's deliveries one by one, with their own progress. Ctrl-C lets the one in
    hand finish (a second one aborts it), then says what is recorded and what is left for
    ``evflow run``."""
    import threading

    from evflow.cli.progress import progress
    from evflow.cli.signals import stop_on_signals

    failures: list[str] = []
    done = 0
    with (
        stop_on_signals(threading.Event()) as stop,
        progress(g.out, "delivering", len(ids), "deliveries") as phase,
    ):
        try:
            for delivery_id in ids:
                if stop.is_set():
                    break
                failures += flow.dispatch([delivery_id])
                done += 1
                phase.advance()
        except KeyboardInterrupt:
            stop.set()
    if stop.is_set():
        left = len(ids) - done
        g.out.warn(
            f"evflow import: interrupted: {recorded} events recorded; {left}"
            f" deliver{'y' if left == 1 else 'ies'} pending for `evflow run`"
        )
        raise typer.Exit(130)
    return failures


def log(
    ctx: typer.Context,
    type: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Event type or glob (repeatable).")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject.")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most N events.")] = None,
    tail: Annotated[
        int | None, typer.Option(min=0, help="Only the last N events (still in seq order).")
    ] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Newest first.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep waiting for new events until Ctrl-C.")
    ] = False,
    format: FormatOpt = None,
) -> None:
    """List events in seq order; --format jsonl output is valid 'evflow import' input."""
    g: Globals = ctx.obj
    fmt = g.out.resolve(format)
    if tail is not None and (reverse or limit is not None):
        raise UsageError("--tail: not with --reverse or --limit (--reverse --limit N is the same)")
    if follow and reverse:
        raise UsageError("--follow: not with --reverse")
    since_seq, since_time = parse_position(since, "--since")
    until_seq, until_time = parse_position(until, "--until")
    flt = EventFilter(
        since_seq=since_seq or 0,
        until_seq=until_seq,
        since_time=since_time,
        until_time=until_time,
        types=tuple(type or ()),
        subject=subject,
        limit=tail if tail is not None else limit,
        reverse=reverse or tail is not None,
    )
    flow = g.flow(read_only=True)
    from evflow.cli import render

    events: Iterable[Event] = flow.events(flt)
    if tail is not None:
        events = reversed(list(events))  # the last N, read newest first: N in memory at most
    if not follow:
        with g.out.paged():
            render.events(g.out, events, fmt)
        return
    position = flt.since_seq
    shown = 0
    if tail is not None:
        for event in events:
            render.events(g.out, [event], "jsonl" if fmt != "table" else "line")
            position = event["seq"]
        flt = replace(flt, limit=None, reverse=False)
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
    return replace(flt, since_seq=position, limit=None, reverse=False)


def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID|SEQ", help="An event id or seq.")],
    depth: Annotated[
        int, typer.Option(min=0, help="Levels of caused events to show (0: none).")
    ] = 16,
    limit: Annotated[int, typer.Option(min=0, help="At most N caused events.")] = 1000,
    format: ReportFormatOpt = None,
) -> None:
    """One event, its deliveries, and the tree of events it caused."""
    g: Globals = ctx.obj
    fmt = g.out.resolve(format, piped="json")
    flow = g.flow(read_only=True)
    event = flow.get(ref)
    if event is None:
        raise NotFound(f"no event with id or seq {ref!r}", hint="list events with 'evflow log'")
    tree, hidden = flow.caused(event, depth=depth, limit=limit)
    deliveries = flow.deliveries(event_seq=event["seq"])
    from evflow.cli import render

    seq = event["seq"]
    with g.out.paged():
        render.show(
            g.out, event, tree, deliveries, fmt, flow.rule_errors(seq),
            list(flow.timers(cause_seq=seq)), list(flow.timers(cancelled_by=seq)),
        )  # fmt: skip
        if hidden and fmt == "table":
            g.out.line(
                f"  … {hidden} more caused event(s) beyond --depth {depth} / --limit {limit}"
            )


def stats(ctx: typer.Context, format: ReportFormatOpt = None) -> None:
    """Counts: events, by type, first and last time, deliveries and timers by status."""
    g: Globals = ctx.obj
    fmt = g.out.resolve(format, piped="json")
    flow = g.flow(read_only=True)
    from evflow.core.reports import stats_json

    value = stats_json(flow.display_url, flow.stats(), flow.positions())
    from evflow.cli import render

    render.stats(g.out, value, fmt)
