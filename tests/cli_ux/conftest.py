"""Helpers for the command-line experience tests: a real pseudo-terminal (pexpect), projects on
disk, and logs large enough that a listing which loads everything shows it in its memory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.conftest import REPO, evflow_exe

#: events in the "large" log: enough that holding every event (or every table row) in memory
#: costs tens of megabytes more than streaming them, small enough to build in a few seconds
LARGE = 30_000

ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>])")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no EVFLOW_* or colour settings leaking in, the venv's
    evflow first on PATH, and a pager that is not there unless a test names one."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EVFLOW_", "PYTEST_"))
        or k == "EVFLOW_CEILING_DIRECTORIES"
        and k not in ("NO_COLOR", "FORCE_COLOR", "PAGER", "LESS", "COLUMNS", "LINES", "TERM")
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def spawn(
    args: list[str],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    cols: int = 120,
    rows: int = 40,
    timeout: float = 60,
) -> pexpect.spawn:
    """``evflow ARGS`` on a real pseudo-terminal of ``cols`` x ``rows``."""
    return pexpect.spawn(
        evflow_exe(),
        args,
        cwd=str(cwd),
        env=env or clean_env(),
        dimensions=(rows, cols),
        encoding="utf-8",
        codec_errors="replace",
        timeout=timeout,
        maxread=65536,
    )


def spawn_shell(
    command: str, cwd: Path, *, env: dict[str, str] | None = None, cols: int = 120, rows: int = 40
) -> pexpect.spawn:
    return pexpect.spawn(
        "bash",
        ["-c", command],
        cwd=str(cwd),
        env=env or clean_env(),
        dimensions=(rows, cols),
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
        maxread=65536,
    )


def run_to_end(child: pexpect.spawn) -> tuple[int, str]:
    """Read everything the child writes until it exits; its exit status and its raw output."""
    child.expect(pexpect.EOF)
    out = child.before or ""
    child.close()
    status = child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
    return status, out


def plain(text: str) -> str:
    """Terminal output without escape sequences and carriage returns."""
    return ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def evflow(
    args: list[str], cwd: Path, *, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``evflow ARGS`` with its output piped (a script's view)."""
    return subprocess.run(
        [evflow_exe(), *args],
        cwd=cwd,
        env=env or clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(args: list[str], cwd: Path, **kw: object) -> str:
    proc = evflow(args, cwd, **kw)  # type: ignore[arg-type]
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stdout


def peak_rss_mb(args: list[str], cwd: Path, *, terminal: bool = False, cols: int = 120) -> float:
    """Peak resident memory (MB) of ``evflow ARGS`` run to the end, its output discarded (or, with
    ``terminal``, written to a pseudo-terminal that is read and thrown away)."""
    probe = (
        "import os, pty, resource, subprocess, sys\n"
        "cmd = sys.argv[2:]\n"
        "if sys.argv[1] == 'tty':\n"
        "    import select, struct, fcntl, termios\n"
        "    master, slave = pty.openpty()\n"
        f"    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, {cols}, 0, 0))\n"
        "    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True)\n"
        "    os.close(slave)\n"
        "    while True:\n"
        "        try:\n"
        "            if not os.read(master, 65536):\n"
        "                break\n"
        "        except OSError:\n"
        "            break\n"
        "    p.wait()\n"
        "else:\n"
        "    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "    assert p.returncode == 0, p.stderr\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, "tty" if terminal else "pipe", evflow_exe(), *args],
        cwd=cwd,
        env=clean_env(PAGER="cat"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.strip().splitlines()[-1])


def copy_shop(dest: Path) -> Path:
    """The repository's example project (rules, their tests, the mail script, sample events)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("rules", "scripts"):
        shutil.copytree(REPO / name, dest / name)
    shutil.copy(REPO / "sample_events.jsonl", dest)
    return dest


def write_rules(folder: Path, text: str, name: str = "r.yaml") -> Path:
    rules = folder / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / name).write_text(text)
    return rules


def generate_events(n: int, path: Path) -> Path:
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "generate.py"), str(n), str(path)],
        check=True,
        capture_output=True,
    )
    return path


#: a projection with one row per event (so the large log's snapshot is large too), and a rule
#: with a run action on a few orders (so the log has deliveries)
LARGE_RULES = """\
version: 1
rules:
  - name: note-big-order
    on: order.placed
    if: data.orderAmt > 100
    then:
      - run: ["true"]
projections:
  - name: every_event
    key: event.id
    on:
      "*": upsert
"""


def _build(root: Path, n: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_rules(root, LARGE_RULES)
    events = generate_events(n, root / "events.jsonl")
    ok(["import", str(events), "--no-dispatch"], root)
    ok(["replay"], root)
    return root


@pytest.fixture(scope="session")
def large_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose log holds LARGE events, thousands of deliveries, a LARGE-row snapshot."""
    return _build(tmp_path_factory.mktemp("large") / "proj", LARGE)


@pytest.fixture(scope="session")
def small_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same shape with a hundredth of the events: the baseline for memory comparisons."""
    return _build(tmp_path_factory.mktemp("small") / "proj", LARGE // 100)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A folder to work in, with no project above it that discovery could find."""
    folder = tmp_path / "work"
    folder.mkdir()
    yield folder
