"""The typer application: global options and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from evflow.cli.context import Globals

HELP = """evflow: an ordered event log with rules and projections, for the shell.

Exit status: 0 success, 1 error, 2 usage, 3 invalid rules or failed rule tests,
4 storage unavailable.
"""

app = typer.Typer(
    name="evflow",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
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
            envvar="EVFLOW_DB",
            help="Database URL or path (default .evflow/evflow.db; postgresql://… to share).",
            show_envvar=True,
        ),
    ] = None,
    rules: Annotated[
        str | None,
        typer.Option(
            "--rules",
            envvar="EVFLOW_RULES",
            help="Rules folder (default ./rules).",
            show_envvar=True,
        ),
    ] = None,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show a full traceback on errors.")
    ] = False,
) -> None:
    ctx.obj = Globals(db=db, rules=rules, traceback=traceback)


def _register() -> None:
    from evflow.cli import log_cmds

    log_cmds.register(app)
    for name in ("rules_cmds", "delivery_cmds", "projection_cmds", "schedule_cmds", "bridge_cmds"):
        try:
            module = __import__(f"evflow.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"evflow.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def run(args: list[str]) -> int:
    """Run the CLI on ``args``; turn any error into one line and an exit status."""
    try:
        app(args=args, prog_name="evflow")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
        if "--traceback" in args:
            raise
        from evflow.cli.errors import report

        return report(exc)
    return 0
