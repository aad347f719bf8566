"""A piped `replay` skips typer (issue 16: its import is a tenth of a 100,000-event replay); it
prints, warns and fails exactly as the typer command does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, capture, via_entry, via_typer

LINES = [
    ["replay"],
    ["replay", "--rebuild"],
    ["replay", "members"],
    ["replay", "members", "--rebuild", "member_orders"],
    ["replay", "nope"],
    ["replay", "--rebuil"],
    ["replay", "-x"],
]


@pytest.mark.parametrize("line", LINES, ids=[" ".join(x) for x in LINES])
def test_the_fast_path_and_typer_agree(
    line: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("EVFLOW_DB", "EVFLOW_RULES", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    results = []
    for side, fn in (("main", via_entry), ("typer", via_typer)):
        folder = tmp_path / side
        folder.mkdir()
        shutil.copytree(REPO / "rules", folder / "rules")
        # a member without a userid: the projections skip it, with a warning
        (folder / "rules" / "extra.yaml").write_text(
            "projections:\n  - name: nameless\n    key: data.nope\n"
            "    on: {member.created: upsert}\n",
            encoding="utf-8",
        )
        monkeypatch.chdir(folder)
        base = ["--db", str(folder / "log.db"), "--rules", str(folder / "rules")]
        via_typer([*base, "import", str(REPO / "sample_events.jsonl"), "--no-dispatch"])
        code, out, err = capture(fn, [*base, *line])
        results.append((code, out, err.replace(str(folder), "<dir>")))
    assert results[0] == results[1]
