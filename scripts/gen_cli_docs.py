"""Write docs/cli.md from the commands' own --help, so the reference never drifts from the code.

Run: .venv/bin/python scripts/gen_cli_docs.py   (tests/test_readme.py checks it is up to date)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEADER = """# evflow command reference

Generated from each command's `--help` by `scripts/gen_cli_docs.py`; the README explains the
concepts, this page lists every option. Exit status: 0 success, 1 error, 2 usage, 3 invalid rules
or failed rule tests, 4 storage unavailable.
"""


def commands() -> list[list[str]]:
    import typer.main

    from evflow.cli.app import app

    group = typer.main.get_command(app)
    out: list[list[str]] = []
    for name, cmd in sorted(group.commands.items()):  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        if sub:
            out.extend([name, s] for s in sorted(sub))
        else:
            out.append([name])
    return out


def help_text(command: list[str]) -> str:
    exe = Path(sys.executable).parent / "evflow"
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run(
        [str(exe), *command, "--help"], capture_output=True, text=True, env=env, check=True
    )
    return "\n".join(line.rstrip() for line in proc.stdout.strip().splitlines())


def render() -> str:
    parts = [HEADER]
    parts.append("\n## evflow\n\n```text\n" + help_text([]) + "\n```\n")
    for command in commands():
        parts.append(f"\n## evflow {' '.join(command)}\n\n```text\n{help_text(command)}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    (REPO / "docs" / "cli.md").write_text(render())
    print("wrote docs/cli.md")
