"""``evflow replay [--rebuild] [NAME…]`` without typer, when its output is not a terminal.

A replay of a large log is what CQRS users run all day, and the benchmark times it as a whole
process: importing typer and rich costs it ~0.2 s before the first event (issue 16). This path
takes the plain spellings only (no progress bar: that is for a terminal) and prints exactly what
the typer command prints (:func:`evflow.cli.projection_report.report_results`); anything else,
and every error's message, is the same as through typer, which handles what this does not.
"""

from __future__ import annotations

from evflow.cli.output import Output


def fast_replay(args: list[str], db: str | None, rules: str | None, traceback: bool) -> int | None:
    names: list[str] = []
    rebuild = False
    for arg in args:
        if arg == "--rebuild":
            rebuild = True
        elif arg.startswith("-"):
            return None  # typer's to parse (and to refuse)
        else:
            names.append(arg)
    out = Output()
    if out.is_terminal:
        return None  # the typer command shows a progress bar
    from evflow.app import Evflow
    from evflow.cli.projection_report import report_results
    from evflow.errors import ReplayFailed, TablesNotKept

    try:
        with Evflow(db=db, rules=rules) as flow:
            try:
                results = flow.replay(
                    names or None, rebuild=rebuild, notice=lambda text: out.warn(f"evflow: {text}")
                )
            except (ReplayFailed, TablesNotKept) as exc:
                report_results(out, exc.results)
                raise
            report_results(out, results)
        return 0
    except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
        if traceback or isinstance(exc, SystemExit):
            raise
        from evflow.cli.errors import report

        return report(exc, out.stderr)
