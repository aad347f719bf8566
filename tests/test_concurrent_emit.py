"""Scripts calling `evflow emit` at the same time: every process waits its turn (SQLite)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import evflow_exe, run_cli


def test_eight_shell_loops_emitting_at_once_lose_nothing(project: Path) -> None:
    exe = evflow_exe()
    script = (
        'for i in 0 1 2 3 4 5 6 7 8 9; do "$0" emit load.test -f w="$1" -f i="$i" || exit 1; done'
    )
    loops = [
        subprocess.Popen(
            ["sh", "-c", script, exe, str(w)],
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    errors = [p.communicate(timeout=300)[1] for p in loops]
    assert [p.returncode for p in loops] == [0] * 8, errors
    assert not any("locked" in e for e in errors)
    events = [json.loads(x) for x in run_cli(["log", "--format", "jsonl"]).stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, 81))
    seen = sorted((e["data"]["w"], e["data"]["i"]) for e in events)
    assert seen == [(w, i) for w in range(8) for i in range(10)]
