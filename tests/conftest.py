"""Shared fixtures: a fresh project folder, store URLs for every backend, and a CLI runner."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# project discovery walks up from the working folder: never into a stray .evflow/ or rules/ in
# the shared temporary folder that holds every test's own folder
os.environ.setdefault("EVFLOW_CEILING_DIRECTORIES", tempfile.gettempdir())
BACKENDS = ["sqlite"]
if os.environ.get("EVFLOW_TEST_PG"):
    BACKENDS.append("postgres")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with no EVFLOW_* settings leaking in."""
    monkeypatch.chdir(tmp_path)
    for name in ("EVFLOW_DB", "EVFLOW_RULES", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty log on each backend (PostgreSQL: a fresh schema)."""
    if request.param == "sqlite":
        yield str(tmp_path / "log.db")
        return
    from tests.pg import fresh_schema_url

    with fresh_schema_url() as url:
        yield url


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], stdin: str | None = None) -> Result:
    """Run the evflow CLI in this process (fast path included), capturing its streams."""
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    try:
        return Result(*capture(via_entry, args))
    finally:
        sys.stdin = old_stdin


def capture(run: Callable[[list[str]], int | None], args: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``run(args)`` in this process (SystemExit included)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            result = run(args)
            code = 0 if result is None else result
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def via_entry(args: list[str]) -> int:
    """The ``evflow`` console script: its fast paths (emit, a piped replay) skip typer."""
    from evflow.cli.entry import main

    main(args)
    return 0


def via_typer(args: list[str]) -> int:
    """The typer application alone: what a fast path must agree with."""
    from evflow.cli.app import run

    return run(args)


def evflow_exe() -> str:
    return str(Path(sys.executable).parent / "evflow")


def run_process(
    args: list[str], cwd: Path, stdin: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [evflow_exe(), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=BACKENDS)
def each_backend(
    request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Run a CLI test once per backend: the default database is EVFLOW_DB's."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    from tests.pg import fresh_schema_url

    with fresh_schema_url() as url:
        monkeypatch.setenv("EVFLOW_DB", url)
        yield "postgres"


# -- evflow as a child process whose peak memory is measured -------------------------------------

_RSS_WRAPPER = """
import resource, sys
from evflow.cli.entry import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
sys.stdout.flush()
try:  # this process's own peak (ru_maxrss also counts the parent's pages at a vfork + exec)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("maxrss-kb", peak, file=sys.stderr)
sys.exit(code)
"""


@dataclass
class Measured:
    returncode: int
    stderr: str  # without the measurement's own line
    peak_rss_kb: int  # the child's peak resident set size


def run_measured(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    stdout: int | IO[Any] = subprocess.DEVNULL,
    timeout: float = 120,
) -> Measured:
    """``evflow ARGS`` in a child process that reports its own peak RSS when it ends (what a
    test of bounded memory compares: the child does nothing else).

    The peak is the child's ``VmHWM``, not ``ru_maxrss``: Linux carries the old address space's
    high-water mark across ``exec``, and Python spawns with ``vfork``, so ``ru_maxrss`` would be
    at least the test process's own size (a test that built 100,000 input lines measured 86 MB
    for a tick that peaks at 42 MB)."""
    done = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, *args],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, stdout=stdout,
        stderr=subprocess.PIPE,
        text=True, timeout=timeout,
    )  # fmt: skip
    lines = done.stderr.splitlines()
    [kb] = [int(line.split()[1]) for line in lines if line.startswith("maxrss-kb ")]
    rest = "\n".join(line for line in lines if not line.startswith("maxrss-kb "))
    return Measured(done.returncode, rest, kb)
