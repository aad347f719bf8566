"""``evflow config``: which evflow, which database and rules, and how each was chosen."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from evflow.cli.context import Globals


def register(app: typer.Typer) -> None:
    app.command("config")(config)


SOURCES = {
    "argument": "from {option}",
    "environment": "from {env}",
    "discovery": "discovered in {project}",
    "default": "default: the current folder (no project found above it)",
}


def _source(value: dict[str, Any], option: str, env: str, project: str | None) -> str:
    return SOURCES[value["source"]].format(option=option, env=env, project=project)


def config(
    ctx: typer.Context,
    format: Annotated[
        str | None, typer.Option("--format", help="table (the default, also when piped) or json.")
    ] = None,
) -> None:
    """The version, the database (password masked) and whether it is reachable, the rules folder
    and how each was chosen (flag, environment, discovery, default), the cache, the extras."""
    g: Globals = ctx.obj
    fmt = g.out.resolve(format, piped="table", choices=("table", "json"))
    report = g.flow(read_only=True).config()
    if fmt == "json":
        g.out.json(report)
        return
    db, rules = report["database"], report["rules"]
    if rules.get("valid"):
        counts = (
            f"{rules['rules']} rule{'s' * (rules['rules'] != 1)},"
            f" {rules['schedules']} schedule{'s' * (rules['schedules'] != 1)},"
            f" {rules['projections']} projection{'s' * (rules['projections'] != 1)}"
            f" in {rules['files']} file(s)"
        )
    else:
        counts = f"invalid: {rules.get('problem')}"
    reachable = "yes" if db["reachable"] else db["status"]
    if db["reachable"]:
        reachable += f" ({db['events']} events)"
    extras = ", ".join(
        f"{name} {'installed' if ok else 'not installed'}" for name, ok in report["extras"].items()
    )
    project = report["project"]
    g.out.mapping(
        {
            "version": report["version"],
            "database": f"{db['url']} ({_source(db, '--db', 'EVFLOW_DB', project)})",
            "reachable": reachable,
            "rules": f"{rules['path']} ({_source(rules, '--rules', 'EVFLOW_RULES', project)})",
            "definitions": counts,
            "cache": report["cache"] or "none",
            "extras": extras,
        }
    )
