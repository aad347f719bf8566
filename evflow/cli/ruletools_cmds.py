"""``evflow rules test|schema|graph``: rule tests, the JSON Schema for editors, the rules graph."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evflow.cli.context import Globals
from evflow.cli.render import render_problems
from evflow.core.text import github_escape, github_property
from evflow.errors import UsageError


def register(rules_app: typer.Typer) -> None:
    rules_app.command("test")(test)
    rules_app.command("schema")(schema)
    rules_app.command("graph")(graph)


def test(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Test files or folders (default: the rules folder's tests/)."),
    ] = None,
    format: Annotated[
        str,
        typer.Option("--format", help="text, json (a list of cases) or github (annotations)."),
    ] = "text",
) -> None:
    """Run rule tests: given events at given times, the expected derived events and deliveries.

    Each case runs in a throwaway in-memory log; no action runs. Exit 0 when every case passes,
    3 when one fails or a test file is invalid.
    """
    g: Globals = ctx.obj
    if format not in ("text", "json", "github"):
        raise UsageError(f"--format: expected text, json or github (got {format!r})")
    for path in paths or []:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    report = g.flow().run_rule_tests(paths)
    out = g.out
    if format == "json":
        invalid = [
            {"file": p.file, "case": None, "passed": False, "failures": [str(p)]}
            for p in report.problems
        ]
        out.json(invalid + [r.to_json() for r in report.results])
    elif format == "github":
        render_problems(report.problems, "github", out)
        for r in report.results:
            if not r.passed:
                message = github_escape(f"{r.case}: " + "\n".join(r.failures))
                where = f"file={github_property(r.file)},line={r.line}"
                out.line(f"::error {where},title=rule test failed::{message}")
    else:
        render_problems(report.problems, "text", out)
        for r in report.results:
            out.line(f"{out.status('PASS' if r.passed else 'FAIL')} {r.file}:{r.line}: {r.case}")
            for failure in r.failures:
                out.line(f"    {failure}")
    if format != "json":
        failed = sum(not r.passed for r in report.results)
        passed = len(report.results) - failed
        invalid_note = (
            f", {len(report.problems)} problem(s) in test files" if report.problems else ""
        )
        if not report.files:
            out.warn("no rule tests found (looked in " + str(g.flow().rules_dir / "tests") + ")")
        else:
            # in words, the summary is the command's result (stdout, like the cases above it);
            # beside GitHub annotations it is a note for the log
            summary = f"{passed} passed, {failed} failed in {report.files} file(s){invalid_note}"
            if format == "text":
                out.line(summary)
            else:
                out.warn(summary)
    raise typer.Exit(0 if report.ok else 3)


def schema(
    ctx: typer.Context,
    tests: Annotated[
        bool, typer.Option("--tests", help="The schema of rule test files instead.")
    ] = False,
) -> None:
    """Print the JSON Schema (draft 2020-12) of rule files, for editors (yaml-language-server)."""
    g: Globals = ctx.obj
    g.out.json(g.flow().rules_schema(tests=tests))


def graph(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Print the rules as a graph: event type -> rule -> emitted type or action."""
    g: Globals = ctx.obj
    if format not in ("mermaid", "dot"):
        raise UsageError(f"--format: expected mermaid or dot (got {format!r})")
    from evflow.core import graph as render

    text = render.mermaid(g.flow().ruleset) if format == "mermaid" else render.dot(g.flow().ruleset)
    g.out.stdout.write(text)
