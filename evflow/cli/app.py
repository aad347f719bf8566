"""The typer application: global options and the command groups."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from evflow.cli import (
    bridge_cmds,
    config_cmds,
    delivery_cmds,
    log_cmds,
    projection_cmds,
    rules_cmds,
    ruletools_cmds,
    schedule_cmds,
    serve_cmds,
    timer_cmds,
)
from evflow.cli.context import Globals

HELP = """evflow: an ordered event log with rules and projections, for the shell.

The project is found as git finds a repository: from the current folder up to the
first folder with .evflow/ or rules/. Global options (--db, --rules, --traceback,
--no-pager, --format) go before or after the command name.

Exit status: 0 success, 1 error, 2 usage, 3 invalid rules or failed rule tests,
4 storage unavailable.
"""

app = typer.Typer(
    name="evflow",
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL or path (default .evflow/evflow.db; postgresql://… to share)."
            "  [env var: EVFLOW_DB]",
        ),
    ] = None,
    rules: Annotated[
        str | None,
        typer.Option(
            "--rules",
            help="Rules folder (default ./rules).  [env var: EVFLOW_RULES]",
        ),
    ] = None,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show a full traceback on errors.")
    ] = False,
    no_pager: Annotated[
        bool,
        typer.Option("--no-pager", help="Print listings directly, not through $PAGER (less -FRX)."),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    ctx.obj = Globals(db=db, rules=rules, traceback=traceback)
    ctx.obj.out.no_pager = no_pager


# the command groups, in the order --help lists them
log_cmds.register(app)
rules_cmds.register(app)
ruletools_cmds.register(rules_cmds.rules_app)
delivery_cmds.register(app)
projection_cmds.register(app)
schedule_cmds.register(app)
timer_cmds.register(app)
bridge_cmds.register(app)
serve_cmds.register(app)
config_cmds.register(app)


def run(args: list[str]) -> int:
    """Run the CLI on ``args``; turn any error into one line and an exit status."""
    import typer.main

    from evflow.cli.help import polish

    try:
        command = typer.main.get_command(app)
        polish(command)
        command.main(args=args, prog_name="evflow")
    except SystemExit as exc:
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            # click met a closed pipe (`evflow log | head -1`) and would exit 1: it is the
            # reader saying it has enough, not an error
            sys.stdout = getattr(sys.stdout, "wrapped", sys.stdout)
            sys.stderr = getattr(sys.stderr, "wrapped", sys.stderr)
            raise BrokenPipeError from None
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BrokenPipeError:
        raise  # the reader went away: entry.main ends quietly
    except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
        if "--traceback" in args:
            raise
        from evflow.cli.errors import report

        return report(exc)
    return 0
