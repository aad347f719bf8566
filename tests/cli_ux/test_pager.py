"""On a terminal, long listings go through a pager as git's do: ``$PAGER``, else ``less -FRX``;
``--no-pager`` (before or after the command name) and a pipe print directly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.cli_ux.conftest import clean_env, evflow, ok, plain, run_to_end, spawn


@pytest.fixture
def listing(home: Path) -> Path:
    for n in range(1, 61):
        ok(["emit", "page.test", "-f", f"n={n}"], home)
    return home


def _fake(folder: Path, name: str, marker: str) -> Path:
    """A pager that records its arguments and LESS, then copies its input with a marker."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" > "{folder}/{name}.args"\n'
        f'printf "%s\\n" "$LESS" > "{folder}/{name}.less"\n'
        f'echo "{marker}-START"\n'
        "cat\n"
        f'echo "{marker}-END"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_listing_on_a_terminal_goes_through_PAGER(listing: Path, tmp_path: Path) -> None:
    pager = _fake(tmp_path / "bin", "mypager", "PAGED")
    status, out = run_to_end(spawn(["log"], listing, env=clean_env(PAGER=str(pager))))
    text = plain(out)
    assert status == 0, text
    assert "PAGED-START" in text and "PAGED-END" in text
    # every row went through the pager
    inside = text.split("PAGED-START", 1)[1].split("PAGED-END", 1)[0]
    assert "page.test" in inside and "n=60" in inside


def test_default_pager_is_less_FRX(listing: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "less", "LESS")
    env = clean_env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    status, out = run_to_end(spawn(["log"], listing, env=env))
    assert status == 0, plain(out)
    assert "LESS-START" in plain(out)
    args = (bin_dir / "less.args").read_text().split()
    less_env = (bin_dir / "less.less").read_text().strip()
    flags = "".join(a.lstrip("-") for a in args if a.startswith("-")) + less_env
    assert {"F", "R", "X"} <= set(flags), (args, less_env)


@pytest.mark.parametrize(
    "args", [["log", "--no-pager"], ["--no-pager", "log"]], ids=["after", "before"]
)
def test_no_pager_prints_directly(listing: Path, tmp_path: Path, args: list[str]) -> None:
    pager = _fake(tmp_path / "bin", "mypager", "PAGED")
    status, out = run_to_end(spawn(args, listing, env=clean_env(PAGER=str(pager))))
    assert status == 0, plain(out)
    assert "PAGED" not in plain(out) and "n=60" in plain(out)
    assert not (tmp_path / "bin" / "mypager.args").exists()


def test_piped_output_never_pages(listing: Path, tmp_path: Path) -> None:
    pager = _fake(tmp_path / "bin", "mypager", "PAGED")
    proc = evflow(["log"], listing, env=clean_env(PAGER=str(pager)))
    assert proc.returncode == 0 and "PAGED" not in proc.stdout
    assert not (tmp_path / "bin" / "mypager.args").exists()


@pytest.mark.parametrize(
    "args",
    [["deliveries"], ["query", "every_event"], ["show", "1"]],
    ids=["deliveries", "query", "show"],
)
def test_other_listings_page_too(small_project: Path, tmp_path: Path, args: list[str]) -> None:
    pager = _fake(tmp_path / "bin", "mypager", "PAGED")
    status, out = run_to_end(spawn(args, small_project, env=clean_env(PAGER=str(pager))))
    assert status == 0, plain(out)
    assert "PAGED-START" in plain(out)


def test_follow_never_pages(listing: Path, tmp_path: Path) -> None:
    pager = _fake(tmp_path / "bin", "mypager", "PAGED")
    child = spawn(["log", "--follow"], listing, env=clean_env(PAGER=str(pager)))
    child.expect("n=60")
    ok(["emit", "page.test", "-f", "n=61"], listing)
    child.expect("n=61")
    child.sendintr()
    status, out = run_to_end(child)
    assert status == 0 and "PAGED" not in plain(out)
