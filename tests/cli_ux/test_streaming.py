"""Listings stream: the first rows are written before the rest of the log is read, and memory
stays flat whatever the log's size (tables are laid out from a bounded first page).

No timings: memory is compared between a log and one a hundred times smaller, and "the first
row comes first" is seen from the process itself: once it has printed its first rows and is
blocked on a terminal nobody reads, its peak memory so far must be that of a small log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cli_ux.conftest import (
    clean_env,
    evflow,
    evflow_exe,
    peak_rss_mb,
    run_to_end,
    spawn,
)

#: what a listing may cost beyond the same listing over a log a hundred times smaller; holding
#: 30,000 events (or their table rows) costs several times this
BUDGET_MB = 25

LISTINGS = [
    ["log"],
    ["log", "--reverse"],
    ["log", "--tail", "20"],
    ["deliveries"],
    ["query", "every_event"],
]


@pytest.mark.slow
@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
@pytest.mark.parametrize("args", LISTINGS, ids=lambda a: "-".join(a))
def test_memory_stays_flat(
    large_project: Path, small_project: Path, args: list[str], terminal: bool
) -> None:
    extra = ["--no-pager"] if terminal else ["--format", "jsonl"]
    small = peak_rss_mb([*args, *extra], small_project, terminal=terminal)
    large = peak_rss_mb([*args, *extra], large_project, terminal=terminal)
    assert large - small < BUDGET_MB, f"{args}: {small:.0f} MB on 300 events, {large:.0f} on 30,000"


def _peak_so_far_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _blocked_peak(project: Path, args: list[str]) -> float:
    """Start the listing on a terminal that is not read, wait until its first row is there and
    it is blocked writing, and return its peak memory at that moment."""
    child = spawn([*args, "--no-pager"], project, cols=120, rows=40)
    try:
        child.expect(r"\n\s*(\d+|[a-z]-\d+)\s")  # a first row: a seq, a delivery id, a key
        # now stop reading: the terminal's buffer fills and the writer blocks
        last, still = -1.0, 0
        for _ in range(200):
            time.sleep(0.05)
            now = _peak_so_far_mb(child.pid)
            still = still + 1 if now == last else 0
            last = now
            if still >= 10:
                break
        assert child.isalive(), "the listing ended although its output was not read"
        return last
    finally:
        child.terminate(force=True)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["log"], ["deliveries"], ["query", "every_event"]], ids=str)
def test_first_rows_come_before_the_rest_is_read(
    large_project: Path, small_project: Path, args: list[str]
) -> None:
    if "query" in args:
        args = [*args, "--format", "table"]
    baseline = peak_rss_mb([*args, "--no-pager"], small_project, terminal=True)
    blocked = _blocked_peak(large_project, args)
    assert blocked - baseline < BUDGET_MB, (blocked, baseline)


@pytest.mark.slow
def test_piped_jsonl_is_written_while_reading(large_project: Path) -> None:
    """A reader of ``evflow log`` gets its first line while evflow still has most of the log
    to go: the process is alive, blocked on the pipe, with little memory."""
    import subprocess

    proc = subprocess.Popen(
        [evflow_exe(), "log", "--format", "jsonl"],
        cwd=large_project,
        env=clean_env(),
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(b"{")
        time.sleep(0.5)
        assert proc.poll() is None
        assert _peak_so_far_mb(proc.pid) < 200
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "command",
    [
        "evflow log | head -1",
        "evflow log --format table | head -1",
        "evflow log --format json | head -1",
        "evflow deliveries | head -1",
        "evflow query every_event | head -1",
        "evflow query every_event --format csv | head -1",
    ],
)
def test_a_closed_pipe_is_not_an_error(large_project: Path, command: str) -> None:
    import subprocess

    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        cwd=large_project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_query_on_a_terminal_is_a_listing(large_project: Path) -> None:
    """``query`` at a terminal streams like the others (it used to lay out every row first)."""
    child = spawn(["query", "every_event", "--no-pager"], large_project)
    child.expect("key")
    child.expect(r"\n\S+\s+\d+")
    assert child.isalive()
    child.terminate(force=True)


def test_tables_lay_out_from_the_first_page(home: Path) -> None:
    """A long value after the first page does not widen (or break) the columns of the rows
    already printed: they were printed before it was read."""
    for n in range(1, 301):
        evflow(["emit", "t", "-f", f"n={n}"], home)
    evflow(["emit", "a." + "x" * 70, "-f", "n=301"], home)
    status, out = run_to_end(spawn(["log", "--no-pager"], home, cols=120))
    assert status == 0
    lines = [ln for ln in out.replace("\r", "").splitlines() if ln.strip()]
    first_rows = lines[1:50]
    widths = {len(ln.rstrip()) for ln in first_rows}
    assert max(widths) < 100, first_rows[:3]
    assert "x" * 70 in out.replace("\r\n", "")  # the long type is shown whole, not cut
