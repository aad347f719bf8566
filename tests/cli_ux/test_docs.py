"""Every console example in README.md and docs/*.md runs, and prints what the docs say it prints.

HOW TO WRITE AN EXAMPLE THAT THIS TEST RUNS (read this before adding one)

A console example is a fenced block whose info string is ``console``. Each line starting with
``$ `` is a command (a line ending in ``\\`` continues on the next); the lines after it, up to
the next ``$ ``, are what it prints: stdout and stderr together, as on a terminal. A command
followed by no lines must print nothing.

- Commands run with bash, one after another, in a *session*: a fresh folder that is the current
  folder (``cd`` and ``export`` carry over to the next command, ``echo $?`` works). The folder
  is ``~/NAME`` (``HOME`` is its parent; paths under ``HOME`` print as ``~/…``), on a real
  terminal 100 columns wide, with ``NO_COLOR=1`` and ``PAGER=cat``: what a user sees, tables
  included. ``evflow`` is this checkout's.
- A file starts with an empty session called ``project``. Blocks share the session of the
  file until a ``project`` directive starts a new one.
- Output is compared line by line, after these maskings (on both sides):
  * ``…`` stands for anything within a line; a line that is only ``…`` for any lines (none
    too). Use it for what is long or depends on the machine, never to hide a wrong number.
  * UUIDs are masked, and so is a cut one such as ``01a217c2-c68d-…``.
  * A time (RFC 3339) that the run prints within a day of the run matches any time in the
    docs: write real times as the docs' author saw them. Times far from now (``2016-10-02…``,
    a ``--now`` in 2026-03) must be exactly right.
  * ``in 0.09s`` (elapsed seconds) is masked; runs of spaces count as one, and so do runs of
    three or more ``-`` (table widths).
  * Seqs, counts and everything else must be exact: if a doc says ``seq 19``, it is 19.
- Directives are HTML comments (invisible on GitHub), placed before the block they concern:
  * ``<!-- docs-test: project NAME -->``: a new session in a new folder ``~/NAME``. With
    NAME ``shop``, the folder holds a copy of the repository's example: ``rules/``,
    ``scripts/`` and ``sample_events.jsonl``.
  * ``<!-- docs-test: file PATH -->`` before any fenced block (yaml, python, …): its text is
    written to PATH in the session (so a doc's rule file is the one its examples use).
  * ``<!-- docs-test: run -->`` before an ``sh`` block: its commands run, output unchecked
    (``&&``-steps that create a venv or pip install are left out; ``.venv/bin/`` is dropped).
  * ``<!-- docs-test: setup`` … ``-->``: the lines inside run (bash, in the session) before the
    next block, output unchecked; they must succeed. For what a reader needs not see.
  * ``<!-- docs-test: env NAME=VALUE -->``: set for the rest of the session.
  * ``<!-- docs-test: background COMMAND -->``: start COMMAND (bash) in the session; it is
    stopped when the session ends. Wait for it in a ``setup`` if needed.
  * ``<!-- docs-test: postgres NAME -->``: the session needs PostgreSQL (EVFLOW_TEST_PG; the
    rest of the session is skipped without it). NAME, wherever a command says it, becomes a
    fresh name for this run (and is printed back as NAME): a schema, or a database that the
    example creates; schemas and databases of that name are dropped when the session ends.
  * ``<!-- docs-test: skip REASON -->``: the next console block is not run. Only for what
    cannot run here (a second machine, ``kill -9`` timing); say why.
- Run one file's examples: ``.venv/bin/python -m pytest tests/cli_ux/test_docs.py -k team``.
  A failure lists every mismatch of the file (command, expected, actual).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pexpect
import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COLUMNS = 100

FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(\w[\w-]*)\s*(.*?)\s*-->", re.S)
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CUT_UUID = r"[0-9a-f]{8}(?:-[0-9a-f]{1,12}){0,4}-?…"
TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
ELAPSED = r"\bin \d+(?:\.\d+)?s\b"


# -- reading the docs -----------------------------------------------------------------------------


@dataclass
class Step:
    kind: str  # project, file, run, setup, env, background, postgres, skip, console
    arg: str = ""
    body: str = ""
    line: int = 0


def steps(path: Path) -> list[Step]:
    """The file's directives and fenced blocks, in order; a directive that concerns the next
    block (file, run, skip) is joined to it."""
    text = path.read_text()
    lines = text.splitlines()
    out: list[Step] = []
    pending: Step | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<!--" in line and "docs-test:" in line:
            j = i
            chunk = line
            while "-->" not in chunk and j + 1 < len(lines):
                j += 1
                chunk += "\n" + lines[j]
            m = DIRECTIVE.search(chunk)
            assert m, f"{path.name}:{i + 1}: malformed docs-test directive"
            kind, arg = m.group(1), m.group(2)
            if kind == "setup":
                out.append(Step("setup", body=arg, line=i + 1))
            elif kind in ("file", "run", "skip"):
                pending = Step(kind, arg, line=i + 1)
            elif kind in ("project", "env", "background", "postgres"):
                out.append(Step(kind, arg, line=i + 1))
            else:
                raise AssertionError(f"{path.name}:{i + 1}: unknown docs-test directive {kind!r}")
            i = j + 1
            continue
        fence = FENCE.match(line)
        if fence:
            indent, info = fence.group(1), fence.group(2)
            body: list[str] = []
            i += 1
            while i < len(lines) and not FENCE.match(lines[i]):
                body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            start = i - len(body)
            content = "\n".join(body) + "\n"
            if pending is not None:
                if pending.kind == "skip":
                    assert info == "console", f"{path.name}:{pending.line}: skip before {info}"
                    assert pending.arg, f"{path.name}:{pending.line}: skip needs a reason"
                else:
                    out.append(Step(pending.kind, pending.arg, content, start))
                pending = None
            elif info == "console":
                out.append(Step("console", body=content, line=start))
        i += 1
    return out


@dataclass
class Command:
    text: str
    expected: list[str]
    line: int


def commands(block: Step) -> list[Command]:
    out: list[Command] = []
    lines = block.body.rstrip("\n").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"line {block.line + i}: output before any command"
        text = line[2:]
        start = block.line + i
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + "\n" + lines[i]
        i += 1
        expected: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        out.append(Command(text, expected, start))
    return out


# -- a terminal's screen --------------------------------------------------------------------------

ESC = re.compile(r"\x1b(\[[0-9;?]*)([@-~])|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\x1b\][^\x07]*\x07")


def screen(raw: str) -> str:
    """What a terminal shows after ``raw``: carriage returns, cursor moves and erasures applied
    (progress bars leave what they leave on a real terminal, not every frame)."""
    rows: list[list[str]] = [[]]
    row = col = 0
    pos = 0
    while pos < len(raw):
        m = ESC.match(raw, pos)
        if m:
            pos = m.end()
            if m.group(2):
                params = m.group(1)[1:]
                n = int(params) if params.isdigit() else 1
                cmd = m.group(2)
                if cmd == "A":
                    row = max(0, row - n)
                elif cmd == "B":
                    row += n
                elif cmd == "K":
                    rows[row][col:] = [] if params in ("", "0") else rows[row][col:]
                    if params == "2":
                        rows[row] = []
                elif cmd == "G":
                    col = max(0, n - 1)
                elif cmd == "J" and params in ("", "0"):
                    del rows[row + 1 :]
                    rows[row][col:] = []
                while len(rows) <= row:
                    rows.append([])
            continue
        ch = raw[pos]
        pos += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            while len(rows) <= row:
                rows.append([])
        elif ch == "\b":
            col = max(0, col - 1)
        elif ch >= " " or ch == "\t":
            line = rows[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    return "\n".join("".join(r).rstrip() for r in rows)


# -- sessions -------------------------------------------------------------------------------------


@dataclass
class Session:
    root: Path  # HOME
    name: str
    env: dict[str, str]
    status: int = 0
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    replacements: dict[str, str] = field(default_factory=dict)  # in commands: doc -> real
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    skip_reason: str | None = None

    @property
    def folder(self) -> Path:
        return self.root / self.name

    @property
    def state(self) -> Path:
        return self.root / ".docs-test"

    def close(self) -> None:
        for proc in self.background:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.schemas:
            import psycopg

            with psycopg.connect(os.environ["EVFLOW_TEST_PG"], autocommit=True) as conn:
                for schema in self.schemas:
                    rows = conn.execute(
                        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                        (schema + "%",),
                    ).fetchall()
                    for (name,) in rows:
                        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                    # or a database the example created (createdb NAME)
                    conn.execute(f'DROP DATABASE IF EXISTS "{schema}" WITH (FORCE)')


def new_session(base: Path, name: str) -> Session:
    name = name or "project"
    root = base / f"s{uuid.uuid4().hex[:8]}"
    folder = root / name
    folder.mkdir(parents=True)
    if name == "shop":
        for sub in ("rules", "scripts"):
            shutil.copytree(REPO / sub, folder / sub)
        shutil.copy(REPO / "sample_events.jsonl", folder)
    state = root / ".docs-test"
    state.mkdir()
    (state / "cwd").write_text(str(folder))
    (state / "env").write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith(("EVFLOW_", "PYTEST_", "COV_")) or k == "EVFLOW_CEILING_DIRECTORIES")
        and k not in ("NO_COLOR", "FORCE_COLOR", "PAGER", "LESS", "COLUMNS", "LINES", "CDPATH")
    }
    env.update(
        HOME=str(root),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        TERM="xterm",
        NO_COLOR="1",
        PAGER="cat",
        LANG="C.UTF-8",
        LC_ALL="C.UTF-8",
        TZ="UTC",
        PS1="$ ",
    )
    return Session(root=root, name=name, env=env)


def _script(session: Session, command: str) -> str:
    for doc, real in session.replacements.items():
        command = command.replace(doc, real)
    state = session.state
    return (
        f'cd "$(cat {state}/cwd)"\n'
        f"source {state}/env\n"
        f"(exit {session.status})\n"
        f"{command}\n"
        "__docs_status=$?\n"
        "wait\n"
        f"pwd > {state}/cwd\n"
        f"export -p | grep -v -E '^declare -x (PWD|OLDPWD|SHLVL|_)=' > {state}/env\n"
        "exit $__docs_status\n"
    )


def run_command(session: Session, command: str, timeout: float = 90) -> tuple[int, str]:
    """Run one command on a terminal; its exit status and the screen it leaves."""
    child = pexpect.spawn(
        "bash",
        ["--norc", "--noprofile", "-c", _script(session, command)],
        cwd=str(session.folder),
        env=session.env,
        dimensions=(50, COLUMNS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=timeout,
        maxread=65536,
    )
    try:
        child.expect(pexpect.EOF)
    except pexpect.TIMEOUT:
        child.terminate(force=True)
        session.status = 124
        return 124, (child.before or "") + f"\n[docs-test: no end after {timeout:g}s]"
    raw = child.before or ""
    child.close()
    status = child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
    session.status = status
    text = screen(raw)
    for doc, real in session.replacements.items():
        text = text.replace(real, doc)
    home = str(session.root)
    text = text.replace(home + "/", "~/").replace(home, "~")
    return status, text


def run_setup(session: Session, body: str, where: str) -> None:
    status, text = run_command(session, body)
    assert status == 0, f"{where}: setup failed ({status}):\n{body}\n{text}"
    session.status = 0


def quick_steps(body: str) -> str:
    """An ``sh`` block's commands without the steps that install evflow."""
    out = []
    for line in body.splitlines():
        parts = [p.strip() for p in line.split("&&")]
        kept = [
            p.replace(".venv/bin/", "")
            for p in parts
            if p and not re.match(r"(python3? -m venv|\S*pip3? install|\S*pip install)", p)
        ]
        if kept:
            out.append(" && ".join(kept))
    return "\n".join(out)


# -- comparing ------------------------------------------------------------------------------------


def _normal(line: str) -> str:
    line = re.sub(ELAPSED, "in <S>", line.rstrip())
    line = re.sub(r"-{3,}", "---", line)  # rules under headers (psql, markdown) follow widths
    return re.sub(r" +", " ", line)


def mask_actual(text: str, started: datetime) -> list[str]:
    low, high = started - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)

    def recent(m: re.Match[str]) -> str:
        try:
            value = datetime.fromisoformat(m.group(0).replace("Z", "+00:00"))
        except ValueError:
            return m.group(0)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return "\x00NOW\x00" if low <= value <= high else m.group(0)

    out = []
    for line in text.splitlines():
        line = re.sub(UUID, "\x00ID\x00", line)
        line = re.sub(TIME, recent, line)
        out.append(_normal(line))
    while out and not out[-1].strip():
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
    return out


def expected_pattern(line: str) -> re.Pattern[str] | None:
    """A regex for one expected line; None for a line that is only ``…`` (any lines)."""
    line = _normal(line)
    if line.strip() == "…":
        return None
    tokens = re.split(f"({UUID}|{CUT_UUID}|{TIME}|…)", line)
    parts = []
    for token in tokens:
        if not token:
            continue
        if re.fullmatch(UUID, token) or re.fullmatch(CUT_UUID, token):
            parts.append("\x00ID\x00")
        elif re.fullmatch(TIME, token):
            parts.append(f"(?:{re.escape(token)}|\x00NOW\x00)")
        elif token == "…":
            parts.append(".*?")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts) + r"\Z")


def matches(expected: list[str], actual: list[str]) -> bool:
    patterns = [expected_pattern(line) for line in expected]
    while patterns and patterns[-1] is not None and not expected[len(patterns) - 1].strip():
        patterns.pop()

    def walk(p: int, a: int) -> bool:
        if p == len(patterns):
            return a == len(actual)
        pattern = patterns[p]
        if pattern is None:
            return any(walk(p + 1, k) for k in range(a, len(actual) + 1))
        return a < len(actual) and bool(pattern.match(actual[a])) and walk(p + 1, a + 1)

    return walk(0, 0)


# -- the test -------------------------------------------------------------------------------------


def _run_file(path: Path, base: Path) -> tuple[list[str], int]:
    problems: list[str] = []
    ran = 0
    session = new_session(base, "project")
    try:
        for step in steps(path):
            where = f"{path.relative_to(REPO)}:{step.line}"
            if step.kind == "project":
                session.close()
                session = new_session(base, step.arg)
                continue
            if session.skip_reason and step.kind != "project":
                continue
            if step.kind == "postgres":
                url = os.environ.get("EVFLOW_TEST_PG")
                if not url:
                    session.skip_reason = "EVFLOW_TEST_PG is not set"
                    continue
                real = f"dt_{uuid.uuid4().hex[:10]}"
                session.replacements[step.arg] = real
                session.schemas.append(real)
            elif step.kind == "env":
                name, _, value = step.arg.partition("=")
                for doc, real in session.replacements.items():
                    value = value.replace(doc, real)
                session.env[name] = value
            elif step.kind == "background":
                command = step.arg
                for doc, real in session.replacements.items():
                    command = command.replace(doc, real)
                session.background.append(
                    subprocess.Popen(
                        ["bash", "-c", command],
                        cwd=session.folder,
                        env=session.env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
                time.sleep(0.2)
            elif step.kind == "file":
                target = session.folder / step.arg
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(step.body)
            elif step.kind == "run":
                run_setup(session, quick_steps(step.body), where)
            elif step.kind == "setup":
                run_setup(session, step.body, where)
            elif step.kind == "console":
                for command in commands(step):
                    ran += 1
                    _, text = run_command(session, command.text)
                    actual = mask_actual(text, session.started)
                    if not matches(command.expected, actual):
                        problems.append(
                            f"{path.relative_to(REPO)}:{command.line}: $ {command.text}\n"
                            + "--- expected\n"
                            + "\n".join(command.expected)
                            + "\n--- actual\n"
                            + text
                            + "\n"
                        )
    finally:
        session.close()
    return problems, ran


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_console_examples_print_what_the_docs_say(path: Path, tmp_path: Path) -> None:
    problems, _ = _run_file(path, tmp_path)
    assert not problems, f"{len(problems)} example(s) differ:\n\n" + "\n".join(problems)


def test_every_doc_with_console_examples_is_checked() -> None:
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        assert path in DOCS


# -- the harness's own rules ----------------------------------------------------------------------


def test_masking_rules() -> None:
    started = datetime.now(UTC)
    now = started.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    actual = mask_actual(
        f"recorded a seq 1 id {uuid.uuid4()} at {now}\nkey  seq\nu1   16\n", started
    )
    assert matches(
        ["recorded a seq 1 id 01a217c2-c68d-… at 2026-11-26T12:09:13.332343Z", "key seq", "u1 16"],
        actual,
    )
    assert not matches(["recorded a seq 2 id …", "…"], actual)
    assert matches(["recorded …", "…"], actual)
    assert matches(["…"], actual) and not matches([], actual)
    fixed = mask_actual("tick 2016-10-01T00:00:00Z", started)
    assert matches(["tick 2016-10-01T00:00:00Z"], fixed)
    assert not matches(["tick 2016-10-02T00:00:00Z"], fixed)
    assert matches(["done in 0.09s"], mask_actual("done in 1.52s", started))


def test_screen_applies_carriage_returns_and_erasures() -> None:
    raw = "working 10%\r\x1b[2Kworking 90%\r\x1b[2K\x1b[1A\x1b[2Kresult\r\n"
    assert screen("line1\r\n" + raw) == "result\n"
    assert screen("a\r\nb\r\n") == "a\nb\n"


def test_every_console_block_parses() -> None:
    found = 0
    for path in DOCS:
        for step in steps(path):
            if step.kind == "console":
                found += len(commands(step))
    assert found > 20
