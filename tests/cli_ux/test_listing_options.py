"""Listing options: ``log --tail N`` and ``--reverse``, ``deliveries --limit N`` and
``--reverse``, ``show --depth``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_ux.conftest import evflow, ok, spawn, write_rules


def _seqs(out: str) -> list[int]:
    return [json.loads(line)["seq"] for line in out.splitlines()]


def _log(home: Path, n: int = 10) -> Path:
    for i in range(1, n + 1):
        ok(["emit", "even" if i % 2 == 0 else "odd", "-f", f"n={i}"], home)
    return home


def test_tail_is_the_last_events_in_seq_order(home: Path) -> None:
    _log(home)
    assert _seqs(ok(["log", "--tail", "3", "--format", "jsonl"], home)) == [8, 9, 10]
    assert _seqs(ok(["log", "--tail", "30", "--format", "jsonl"], home)) == list(range(1, 11))
    assert _seqs(ok(["log", "--tail", "0", "--format", "jsonl"], home)) == []
    # with a filter: the last N that match
    assert _seqs(ok(["log", "--tail", "2", "--type", "odd", "--format", "jsonl"], home)) == [7, 9]
    assert _seqs(ok(["log", "--tail", "2", "--until", "6", "--format", "jsonl"], home)) == [5, 6]


def test_reverse_is_newest_first(home: Path) -> None:
    _log(home)
    assert _seqs(ok(["log", "--reverse", "--format", "jsonl"], home)) == list(range(10, 0, -1))
    assert _seqs(ok(["log", "--reverse", "--limit", "2", "--format", "jsonl"], home)) == [10, 9]
    assert _seqs(ok(["log", "--reverse", "--type", "even", "--format", "jsonl"], home)) == [
        10, 8, 6, 4, 2
    ]  # fmt: skip
    json_out = json.loads(ok(["log", "--reverse", "--limit", "3", "--format", "json"], home))
    assert [e["seq"] for e in json_out] == [10, 9, 8]


def test_tail_and_reverse_and_follow_are_checked(home: Path) -> None:
    _log(home, 2)
    for args in (["--tail", "-1"], ["--tail", "x"], ["--tail", "2", "--reverse"]):
        proc = evflow(["log", *args], home)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_tail_then_follow(home: Path) -> None:
    _log(home, 5)
    child = spawn(["log", "--tail", "2", "--follow"], home)
    child.expect("n=4")
    child.expect("n=5")
    ok(["emit", "odd", "-f", "n=6"], home)
    child.expect("n=6")
    child.sendintr()
    child.expect(__import__("pexpect").EOF)
    assert "n=3" not in (child.before or "")


RULES = """\
version: 1
rules:
  - name: act
    on: job.*
    then:
      - run: ["true"]
"""


def _ids(out: str) -> list[int]:
    return [d["id"] for d in json.loads(out)]


def test_deliveries_limit_and_reverse(home: Path) -> None:
    write_rules(home, RULES)
    for i in range(5):
        ok(["emit", "job.x", "-f", f"n={i}", "--no-dispatch"], home)
    assert _ids(ok(["deliveries", "--format", "json"], home)) == [1, 2, 3, 4, 5]
    assert _ids(ok(["deliveries", "--limit", "2", "--format", "json"], home)) == [1, 2]
    assert _ids(ok(["deliveries", "--reverse", "--format", "json"], home)) == [5, 4, 3, 2, 1]
    assert _ids(ok(["deliveries", "--reverse", "--limit", "2", "--format", "json"], home)) == [
        5, 4
    ]  # fmt: skip
    lines = ok(["deliveries", "--limit", "1", "--format", "jsonl"], home).splitlines()
    assert [json.loads(x)["id"] for x in lines] == [1]
    assert evflow(["deliveries", "--limit", "-1"], home).returncode == 2


FAN = """\
version: 1
rules:
  - name: fan
    on: root
    then:
{fan}
  - name: child
    on: child
    then:
      - emit: grandchild
"""


def test_show_depth_bounds_the_tree(home: Path) -> None:
    fan = "\n".join(f"      - emit: child\n        data: {{i: {i}}}" for i in range(20))
    write_rules(home, FAN.format(fan=fan))
    ok(["emit", "root"], home)  # seq 1; 20 children; each child one grandchild
    full = json.loads(ok(["show", "1", "--format", "json"], home))
    assert sorted({c["depth"] for c in full["caused"]}) == [1, 2] and len(full["caused"]) == 40
    shallow = json.loads(ok(["show", "1", "--depth", "1", "--format", "json"], home))
    assert [c["depth"] for c in shallow["caused"]] == [1] * 20
    text = ok(["show", "1", "--depth", "1", "--format", "table"], home)
    arrows = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("->")]
    assert len(arrows) == 20 and all(a.startswith("-> child ") for a in arrows), arrows
    # what was left out is said, with the option that shows it
    hint = [ln for ln in text.splitlines() if "--depth" in ln]
    assert hint and "20" in hint[0], text
    assert evflow(["show", "1", "--depth", "-1"], home).returncode == 2
