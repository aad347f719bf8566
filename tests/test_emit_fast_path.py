"""`emit`'s fast path (no typer) and the typer command are one command: for every command line,
the same exit status, output, messages and recorded events.

Scripts call `emit` once per event, so it has a parser of its own that skips importing typer
(issue 16 makes it lighter still). These tests hold the two paths to each other on a spread of
command lines, including ones the fast path must hand over to typer (abbreviations, unknown
options, a missing type, help).
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tests.conftest import REPO, capture, via_entry, via_typer

T = "2016-10-02T03:04:05Z"

LINES: list[list[str]] = [
    ["emit", "order.placed", "-d", '{"orderId": "1", "orderAmt": 120}', "--id", "a", "--time", T],
    ["emit", "order.placed", '--data={"orderId": "2", "orderAmt": 5}', "--id", "b", "--time", T],
    ["emit", "order.placed", "-f", "orderId=3", "-f", "orderAmt=101", "--id", "c", "--time", T],
    ["emit", "x.y", "-fa=1", "-f", "b=text", "--id", "d", "--time", T, "--subject", "s1"],
    ["emit", "--id", "e", "--time", T, "x.y", "--source", "shop/x"],
    ["emit", "x.y", "--id=f", f"--time={T}", "--format", "json"],
    ["emit", "x.y", "--id", "g", "--time", T, "--format=jsonl", "--no-dispatch"],
    ["emit", "order.placed", "-f", "orderId=9", "-f", "orderAmt=200", "--dry-run", "--at", T],
    ["emit", "order.placed", "-f", "orderAmt=200", "--dry-run", "--format", "json", "--id", "h"],
    ["emit", "x.y", "--at", T],  # --at without --dry-run: a usage error
    ["emit", "x.y", "--data", "not json"],
    ["emit", "x.y", "--data", "[1, 2]"],
    ["emit", "x.y", "-f", "novalue"],
    ["emit", "x.y", "--time", "yesterday"],
    ["emit", "X Y", "--id", "i"],
    ["emit", "x.y", "--dry", "--id", "j"],  # an abbreviation: typer knows no abbreviations
    ["emit", "x.y", "--no-such-option"],
    ["emit"],
    ["emit", "x.y", "extra", "--id", "k"],
    ["emit", "x.y", "--id", "l", "--time", T, "--strict", "--format", "json"],
    ["emit", "x.y", "--id", "m", "--time", T, "--format", "yaml"],
    ["emit", "x.y", "--id", "n", "--time", T, "-d", '{"a": 1}', "-f", "a=2"],
    ["emit", "x.y", "--id", "o", "--time", T, "--", "more"],
]


def _log(folder: Path) -> list[dict]:
    from evflow.cli.app import run

    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        run(
            [
                "--db",
                str(folder / "log.db"),
                "--rules",
                str(folder / "rules"),
                "log",
                "--format",
                "jsonl",
            ]
        )
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def _scrub(text: str) -> str:
    """Generated ids differ between two runs; everything else must not."""
    import re

    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", "<now>", text)


@pytest.mark.parametrize("line", LINES, ids=[" ".join(a)[:40] for a in LINES])
def test_the_fast_path_and_typer_agree(
    line: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    for name in ("EVFLOW_DB", "EVFLOW_RULES", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    results = []
    for side, fn in (("main", via_entry), ("typer", via_typer)):
        folder = tmp_path / side
        folder.mkdir()
        shutil.copytree(REPO / "rules", folder / "rules")
        monkeypatch.chdir(folder)
        args = ["--db", str(folder / "log.db"), "--rules", str(folder / "rules"), *line]
        code, out, err = capture(fn, args)
        events = _log(folder) if (folder / "log.db").exists() else []
        for ev in events:
            for volatile in ("id", "time", "recordedtime", "evflowcause", "evflowroot"):
                if volatile in ev and not (volatile == "id" and ev["type"] == "x.y"):
                    ev[volatile] = "<volatile>"
        results.append((code, _scrub(out), _scrub(err).replace(str(folder), "<dir>"), events))
    assert results[0] == results[1]
