"""``evflow replay`` and ``evflow query``: materialize projections, read them."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from itertools import chain, islice
from typing import Annotated, Any

import typer

from evflow.cli.context import Globals
from evflow.cli.output import FIRST_PAGE, Column
from evflow.core.positions import parse_position
from evflow.errors import UsageError

QUERY_FORMATS = ("table", "json", "jsonl", "csv")


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
    app.command("query")(query)


def replay(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(help="Projections to replay (default: all).")
    ] = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild", help="Rebuild from scratch (built aside, swapped in at the end)."
        ),
    ] = False,
) -> None:
    """Bring projections up to date from the log (incremental from each checkpoint)."""
    g: Globals = ctx.obj
    from evflow.errors import ReplayFailed, TablesNotKept

    flow = g.flow()
    notice = lambda text: g.out.warn(f"evflow: {text}")  # noqa: E731
    from evflow.cli.progress import progress

    try:
        with progress(g.out, "replaying", None, "events") as phase:
            results = flow.replay(
                names, rebuild=rebuild, notice=notice, progress=lambda done, _: phase.update(done)
            )
    except (ReplayFailed, TablesNotKept) as exc:
        _report(g, exc.results)
        raise
    except KeyboardInterrupt:
        _interrupted(g, flow, names, rebuild)
        raise typer.Exit(130) from None
    _report(g, results)


def _interrupted(g: Globals, flow: Any, names: list[str] | None, rebuild: bool) -> None:
    """Ctrl-C: where each projection stands (its last committed batch) and how to go on."""
    positions = flow.positions()
    last = flow.last_seq()
    wanted = names or [p.name for p in flow.ruleset.projections]
    where = ", ".join(
        f"{name} at seq {positions.get(name, {}).get('position', 0)} of {last}" for name in wanted
    )
    again = "evflow replay --rebuild" if rebuild else "evflow replay"
    g.out.warn(f"evflow replay: interrupted; {where}; run `{again}` to go on")


def _report(g: Globals, results: Iterable[Any]) -> None:
    from evflow.cli.projection_report import report_results

    report_results(g.out, results)


def query(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Projection name.")],
    key: Annotated[str | None, typer.Argument(help="One row's key.")] = None,
    where: Annotated[
        str | None, typer.Option("--where", help="CEL filter over state and key.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="As it was at this SEQ or TIME (computed from the log)."),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", help="table, json, jsonl or csv (default: table on a terminal, else jsonl)."
        ),
    ] = None,
    sql: Annotated[
        str | None,
        typer.Option(
            "--sql",
            help="Run this read-only SELECT on the projection's SQL table (its table: section)"
            " and print its rows, e.g. --sql 'SELECT key, orders WHERE ...'.",
            metavar="STATEMENT",
        ),
    ] = None,
) -> None:
    """Read a projection's rows: a list of {key, state, seq} (seq: the last event applied).

    With --sql, the rows of a read-only SQL statement on the projection's table instead:
    a list of {column: value}.
    """
    g: Globals = ctx.obj
    fmt = g.out.resolve(format, piped="jsonl", choices=QUERY_FORMATS)
    flow = g.flow(read_only=True)
    flow.last_seq()  # a missing log is one line (exit 4) before anything else
    flow.check_projection(name)
    if sql is not None:
        if key is not None or where is not None or as_of is not None:
            raise UsageError("--sql reads the table as it is: no KEY, --where or --as-of with it")
        _warn_stale(g, name, flow.catch_up([name]))
        columns, found = flow.sql(name, sql)
        _render_sql(g, fmt, columns, found)
        return
    rows: Iterable[Any]
    if as_of is not None:
        seq, time = _parse_as_of(as_of)
        rows = flow.as_of(name, seq=seq, time=time, key=key, where=where)
    else:
        _warn_stale(g, name, flow.catch_up([name]))
        rows = flow.query(name, key, where=where)
    with g.out.paged():
        _render(g, fmt, rows)


def _warn_stale(g: Globals, name: str, stale: Any) -> None:
    """Say on stderr what a failed catch-up left stale (the read goes on)."""
    if stale.table_error is not None:
        g.out.warn(f"evflow: warning: {stale.table_error.message}")
    if stale.error is None:
        return
    g.out.warn(f"evflow: warning: {stale.error.message}")
    if stale.outdated:
        g.out.warn(
            f"evflow: warning: projection {name} was built from an older definition"
            " and rebuilding it failed; showing the snapshot of the old definition"
        )
    else:
        g.out.warn(
            f"evflow: warning: projection {name} is behind the log by {stale.behind}"
            " event(s); showing the stored snapshot"
        )


def _render_sql(g: Globals, fmt: str, columns: list[str], found: list[list[Any]]) -> None:
    if fmt == "json":
        g.out.json([dict(zip(columns, row, strict=True)) for row in found])
    elif fmt == "jsonl":
        g.out.jsonl(dict(zip(columns, row, strict=True)) for row in found)
    elif fmt == "csv":
        writer = csv.writer(g.out.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in found)
    else:
        g.out.table(columns, ([_cell(v) for v in row] for row in found))


def _parse_as_of(value: str) -> tuple[int | None, str | None]:
    return parse_position(value.strip(), "--as-of")


def _render(g: Globals, fmt: str, rows: Iterable[Any]) -> None:
    if fmt == "json":
        g.out.json_stream(r.to_json() for r in rows)
        return
    if fmt == "jsonl":
        g.out.jsonl(r.to_json() for r in rows)
        return
    # csv and table: one column per state field, first-seen order in the first page (so memory
    # stays flat on any snapshot: a field first seen later is in json/jsonl, not in these)
    it = iter(rows)
    page = list(islice(it, FIRST_PAGE))
    listed = chain(page, it)
    fields: dict[str, None] = {}
    for r in page:
        fields.update(dict.fromkeys(r.state))
    # a state field named like a row column gets a "state." prefix, so no header is ambiguous
    columns = [
        "key",
        "seq",
        *(f"state.{f}" if f in ("key", "seq") or f.startswith("state.") else f for f in fields),
    ]
    cells = ([r.key, r.seq, *(_cell(r.state.get(f)) for f in fields)] for r in listed)
    if fmt == "csv":
        writer = csv.writer(g.out.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
    else:
        g.out.table([Column("key", key=True), Column("seq", key=True), *columns[2:]], cells)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    return _compact(value)  # true/false, lists and maps as JSON


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
