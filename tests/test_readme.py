"""The README's promises: its quick start runs, its test command is what CI runs, and every
command is documented and has help."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, evflow_exe


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|console)\n(.*?)```", text, flags=re.S)


def test_quick_start_runs_on_the_bundled_example(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = code_blocks(readme)[0].strip()
    for name in ("rules", "scripts"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "sample_events.jsonl", tmp_path)
    steps = [s.strip() for s in quick_start.split("&&")]
    # the install steps are what .ci/run does; here the test's own environment is installed
    run = [s for s in steps if s.startswith(".venv/bin/evflow ")]
    assert run and steps[-1] in run, steps
    outputs = []
    for step in run:
        argv = [evflow_exe(), *shlex.split(step)[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (step, proc.stderr)
        outputs.append(proc.stdout)
    assert outputs[-1].strip()


def test_test_command_is_what_ci_runs() -> None:
    test_command = code_blocks((REPO / "README.md").read_text())[1].strip()
    assert test_command in (REPO / ".ci" / "run").read_text()


def _commands() -> list[list[str]]:
    import typer.main

    from evflow.cli.app import app

    group = typer.main.get_command(app)
    out: list[list[str]] = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        if sub:
            out.extend([name, s] for s in sub)
        else:
            out.append([name])
    return out


def test_every_command_has_help_and_is_documented() -> None:
    docs = (REPO / "README.md").read_text() + "".join(
        p.read_text() for p in (REPO / "docs").glob("*.md")
    )
    for command in _commands():
        proc = subprocess.run([evflow_exe(), *command, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, command
        assert "Usage" in proc.stdout, command
        assert f"evflow {' '.join(command)}" in docs, (
            f"'evflow {' '.join(command)}' is not in the docs"
        )


def test_cli_reference_is_up_to_date() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_cli_docs", REPO / "scripts" / "gen_cli_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (REPO / "docs" / "cli.md").read_text() == module.render(), (
        "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_docs.py"
    )


def test_the_graph_in_the_readme_is_current() -> None:
    proc = subprocess.run(
        [evflow_exe(), "--rules", str(REPO / "rules"), "rules", "graph"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() in (REPO / "README.md").read_text()
