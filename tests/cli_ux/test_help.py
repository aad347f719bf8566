"""Help people can read (a summary, an example, placeholders as words, the terminal's width),
one usage for a bare ``evflow emit``, and shell completion for bash, zsh and fish."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli_ux.conftest import clean_env, copy_shop, evflow, plain, run_to_end, spawn


def _commands() -> list[list[str]]:
    import typer.main

    from evflow.cli.app import app

    group = typer.main.get_command(app)
    out: list[list[str]] = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        if sub:
            out.append([name])
            out.extend([name, s] for s in sub)
        else:
            out.append([name])
    return out


COMMANDS = _commands()
PYTHON_TYPES = re.compile(r"<(?:str|int|float|bool|path|list\[[a-z]+\]|[a-z_]+)>")
CLICK_WORDS = re.compile(r"(?<![A-Z_])(?:TEXT|INTEGER|FLOAT|BOOLEAN|PATH)(?![A-Z_])")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_a_summary_an_example_and_word_placeholders(
    tmp_path: Path, command: list[str]
) -> None:
    proc = evflow([*command, "--help"], tmp_path, env=clean_env(COLUMNS="100"))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines[0].startswith("Usage: evflow"), lines[0]
    summary = lines[1].strip()
    assert summary and not summary.startswith(("Options", "Commands", "-")), text
    assert re.search(r"^\s*Examples?:?\s*$", text, re.M), f"no Example section:\n{text}"
    assert re.search(rf"^\s+\$ evflow {re.escape(' '.join(command))}\b", text, re.M), text
    assert not PYTHON_TYPES.search(text), PYTHON_TYPES.search(text)
    assert not CLICK_WORDS.search(text), CLICK_WORDS.search(text)


def test_the_main_help_has_examples_and_version(tmp_path: Path) -> None:
    text = evflow(["--help"], tmp_path).stdout
    assert re.search(r"^\s+\$ evflow ", text, re.M)
    assert "--version" in text and "--no-pager" in text and "--format" in text


@pytest.mark.parametrize("cols", [60, 140])
def test_help_uses_the_terminal_width(tmp_path: Path, cols: int) -> None:
    status, out = run_to_end(spawn(["log", "--help"], tmp_path, cols=cols))
    lines = plain(out).splitlines()
    assert status == 0
    assert max(len(ln.rstrip()) for ln in lines) <= cols
    if cols > 100:
        assert max(len(ln.rstrip()) for ln in lines) > 80, "help wrapped at 80 on a wide terminal"


def test_emit_without_a_type_prints_one_usage(tmp_path: Path) -> None:
    for args in (["emit"], ["--db", "x.db", "emit"], ["emit", "--no-dispatch"]):
        proc = evflow(args, tmp_path)
        assert proc.returncode == 2, args
        assert (proc.stdout + proc.stderr).count("Usage:") == 1, proc.stderr
        assert "TYPE" in proc.stderr
        assert not (tmp_path / ".evflow").exists()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_a_script(tmp_path: Path, shell: str) -> None:
    proc = evflow(["--show-completion", shell], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "evflow" in proc.stdout
    markers = {"bash": ["complete"], "zsh": ["compdef"], "fish": ["complete -c evflow",
               "complete --command evflow"]}[shell]  # fmt: skip
    assert any(m in proc.stdout for m in markers)


def test_install_completion_is_offered(tmp_path: Path) -> None:
    text = evflow(["--help"], tmp_path).stdout
    assert "--install-completion" in text and "--show-completion" in text


def _bash_complete(project: Path, words: str) -> list[str]:
    """What bash offers for ``words`` (the last one being completed), through the real script."""
    script = evflow(["--show-completion", "bash"], project).stdout
    (project / "completion.bash").write_text(script)
    func = re.search(r"complete .*-F (\S+) evflow", script)
    assert func, script
    words_list = words.split(" ")
    command = (
        "source ./completion.bash; "
        f"COMP_WORDS=({words}); COMP_CWORD={len(words_list) - 1}; "
        f'COMP_LINE="{words}"; COMP_POINT=${{#COMP_LINE}}; '
        f'{func.group(1)} evflow; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    proc = subprocess.run(
        ["bash", "-c", command], cwd=project, env=clean_env(), capture_output=True, text=True
    )
    return [w for w in proc.stdout.splitlines() if w]


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return copy_shop(tmp_path / "shop")


def test_bash_completes_commands_options_and_names(shop: Path) -> None:
    assert "log" in _bash_complete(shop, "evflow lo")
    assert "--tail" in _bash_complete(shop, "evflow log --ta")
    assert set(_bash_complete(shop, "evflow query m")) == {"members", "member_orders"}
    assert _bash_complete(shop, "evflow schedules preview n") == ["nightly-sales-report"]
    assert _bash_complete(shop, "evflow redeliver --rule b") == ["big-order-to-sales"]
    assert "ship-on-order" in _bash_complete(shop, "evflow deliveries --rule s")
    assert set(_bash_complete(shop, "evflow replay m")) == {"members", "member_orders"}


def _typer_complete(project: Path, shell: str, words: str) -> str:
    env = clean_env(_EVFLOW_COMPLETE=f"complete_{shell}", _TYPER_COMPLETE_ARGS=words)
    if shell == "fish":
        env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    proc = evflow([], project, env=env)
    return proc.stdout


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_complete_names(shop: Path, shell: str) -> None:
    if shutil.which(shell):
        script = evflow(["--show-completion", shell], shop).stdout
        assert script
    out = _typer_complete(shop, shell, "evflow query m")
    assert "members" in out and "member_orders" in out
    out = _typer_complete(shop, shell, "evflow schedules preview n")
    assert "nightly-sales-report" in out
    assert "log" in _typer_complete(shop, shell, "evflow lo")
