"""How the listings behave on a big log: time to the first row and peak memory (issue 15).

    python benchmarks/listings.py PROJECT          # a project folder with a big log
    python benchmarks/listings.py --make N DIR     # build one: N generated events, their
                                                   # deliveries, a projection with a row per event

Each command runs as its own child process, once on a pseudo-terminal (a person at a terminal,
``--no-pager``: the table) and once into a pipe (a script: JSON lines), its output read and
thrown away as fast as it comes. "First row" is the time from start to the first data row;
"peak RSS" is the child's ``ru_maxrss``. A report, not a test: nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVFLOW = str(Path(sys.executable).parent / "evflow")
ROW = re.compile(rb"(^|\n)\s*(\d+|[a-z]-\d+)\s")  # a data row starts with a seq, id or key
RULES = """\
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
COMMANDS = [
    ["log"],
    ["log", "--tail", "20"],
    ["log", "--reverse"],
    ["deliveries"],
    ["query", "every_event"],
]


def _measure(args: list[str], cwd: Path, terminal: bool) -> tuple[float, float, float]:
    """(seconds to the first row, seconds in all, peak RSS in MB) of one run, in a fresh child
    of a fresh process (so that RUSAGE_CHILDREN is that run's alone)."""
    probe = f"""
import os, pty, re, resource, subprocess, sys, time, struct, fcntl, termios
row = re.compile({ROW.pattern!r})
cmd = {[EVFLOW, *args]!r}
start = time.perf_counter()
first = None
seen = b""
if {terminal!r}:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    p = subprocess.Popen(cmd + ["--no-pager"], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    read = lambda: os.read(master, 65536)
else:
    p = subprocess.Popen(cmd + ["--format", "jsonl"], stdout=subprocess.PIPE)
    read = lambda: p.stdout.read1(65536)
while True:
    try:
        chunk = read()
    except OSError:
        break
    if not chunk:
        break
    if first is None:
        seen = (seen + chunk)[-4096:]
        if ({terminal!r} and row.search(seen)) or (not {terminal!r} and b"\\n" in seen):
            first = time.perf_counter() - start
p.wait()
total = time.perf_counter() - start
print(first, total, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""
    env = {**os.environ, "NO_COLOR": "1", "EVFLOW_CEILING_DIRECTORIES": str(cwd.parent)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]) if out[0] != "None" else float("nan"), float(out[1]), float(out[2])


def make(n: int, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "r.yaml").write_text(RULES)
    events = folder / "events.jsonl"
    subprocess.run([sys.executable, str(HERE / "generate.py"), str(n), str(events)], check=True)
    subprocess.run([EVFLOW, "import", str(events), "--no-dispatch"], cwd=folder, check=True)
    subprocess.run([EVFLOW, "replay"], cwd=folder, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--make", type=int, metavar="N", help="first build a log of N events")
    ns = parser.parse_args()
    if ns.make:
        make(ns.make, ns.project)
    events = subprocess.run(
        [EVFLOW, "stats", "--format", "json"], cwd=ns.project, capture_output=True, text=True
    ).stdout
    count = re.search(r'"events": (\d+)', events)
    print(f"log of {count.group(1) if count else '?'} events in {ns.project}")
    print(f"{'command':<28} {'output':<9} {'first row':>10} {'all':>9} {'peak RSS':>9}")
    for args in COMMANDS:
        for terminal in (True, False):
            first, total, rss = _measure(args, ns.project, terminal)
            print(
                f"{'evflow ' + ' '.join(args):<28} {'terminal' if terminal else 'pipe':<9}"
                f" {first:>9.2f}s {total:>8.1f}s {rss:>6.0f} MB"
            )


if __name__ == "__main__":
    main()
