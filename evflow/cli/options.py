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
