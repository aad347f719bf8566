"""Options shared by several commands (kept apart from output.py, which emit's fast path imports
without typer)."""

from __future__ import annotations

from typing import Annotated

import typer

#: the --format option of listing commands
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", help="table, json or jsonl (default: table on a terminal, else jsonl)."
    ),
]

#: --since / --until of commands that select events of the log
SinceOpt = Annotated[
    str | None, typer.Option(help="After this seq (exclusive) or from this time (inclusive).")
]
UntilOpt = Annotated[
    str | None, typer.Option(help="Up to this seq (inclusive) or before this time.")
]

#: --format of commands that report what they did (emit, import, redeliver)
SummaryFormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="table (a summary in words, the default), json or jsonl."),
]

#: --format of commands that show one report (show, stats)
ReportFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", help="table, json or jsonl (default: table on a terminal, else json)."
    ),
]
