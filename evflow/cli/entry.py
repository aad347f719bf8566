"""The console script. `emit` and a piped `replay` take fast paths; the rest goes through typer."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    from evflow.cli.emit import fast_main

    status = fast_main(args)
    if status is None:
        from evflow.cli.app import run

        status = run(args)
    sys.exit(status)
