"""An import decides what the rules do to each event in its checking pass, which both of its
processes share, and only carries it out as it appends (``Appender.plan``, issue 16). It must
not decide anything it could only know once the event is appended: rules that set timers, or
that read the event's position, are decided at the append, as before."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from evflow.core.rules import plannable
from evflow.rulefiles.loader import parse_text
from evflow.services import importing
from evflow.services.append import Appender
from tests.conftest import run_cli


def _rules(condition: str = "true", template: str = "${{ data.n }}", extra: str = "") -> str:
    return f"""\
version: 1
rules:
  - name: r
    on: t.happened
    if: {json.dumps(condition)}
    then:
      - emit: t.followed
        data: {{v: {json.dumps(template)}}}
{extra}"""


@pytest.mark.parametrize(
    ("condition", "template", "ok"),
    [
        ("true", "${{ data.n }}", True),
        ("event.time > '2016' && data.n > 1", "${{ event.id }}-${{ event.subject }}", True),
        ("has(event.data.seq) && data.seq > 0", "${{ data.recordedtime }}", True),
        ("event.seq > 3", "${{ data.n }}", False),
        ("true", "${{ event.recordedtime }}", False),
        ("has(event.seq)", "${{ data.n }}", False),
        ("true", "${{ event }}", False),
        ("event['seq'] > 0", "${{ data.n }}", False),
        ("event.exists(k, k == 'seq')", "${{ data.n }}", False),
        ("size(event) > 3", "${{ data.n }}", False),
        ("[event][0].seq > 0", "${{ data.n }}", False),
    ],
)
def test_only_rules_that_cannot_read_an_events_position_are_planned(
    condition: str, template: str, ok: bool
) -> None:
    ruleset, problems = parse_text(_rules(condition, template))
    assert not [p for p in problems if p.severity == "error"], problems
    assert plannable(ruleset) is ok


def test_rules_that_set_timers_are_not_planned() -> None:
    timed = """\
  - name: later
    on: t.happened
    then:
      - emit: t.late
        after: 1d
"""
    ruleset, problems = parse_text(_rules(extra=timed))
    assert not [p for p in problems if p.severity == "error"], problems
    assert not plannable(ruleset)
    assert Appender(ruleset).plan({"type": "t.happened", "source": "s", "id": "1"}) is None


def _import(project: Path, rules: str, lines: list[dict]) -> list[tuple]:
    (project / "rules").mkdir(exist_ok=True)
    (project / "rules" / "r.yaml").write_text(rules)
    (project / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = run_cli(["--db", "log.db", "import", "in.jsonl", "--no-dispatch", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    with sqlite3.connect(project / "log.db") as con:
        return con.execute(
            "SELECT seq, type, json_extract(body, '$.data.v') FROM events ORDER BY seq"
        ).fetchall()


def test_a_rule_that_reads_the_events_position_sees_it_on_import(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``event.seq`` is known only once the event is appended: such rules are not planned, and
    they see the position each event is appended at (a shared checking pass included)."""
    monkeypatch.setattr(importing, "PIPED_MIN", 1_000)
    monkeypatch.setattr(importing, "BLOCK", 500)
    lines = [
        {"type": "t.happened", "source": "s", "id": f"e{i}", "time": "2016-10-02T00:00:00Z",
         "data": {"n": i}}
        for i in range(3_000)
    ]  # fmt: skip
    rows = _import(project, _rules("event.seq % 4 == 1", "${{ event.seq }}"), lines)
    expected, seq = [], 0
    for _ in lines:  # a cause at a position 4k+1 is followed by its derived event
        seq += 1
        expected.append((seq, "t.happened", None))
        if seq % 4 == 1:
            seq += 1
            expected.append((seq, "t.followed", seq - 1))
    assert rows == expected


def test_planned_and_unplanned_imports_record_the_same(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain past the depth limit (a rule error and a dead delivery, decided in the plan),
    a filter that fails on some events, deliveries: row for row the same either way."""
    chain = """\
  - name: again
    on: t.followed
    then:
      - emit: t.followed
        data: {v: "${{ data.v }}"}
      - run: ["true"]
"""
    rules = _rules("data.n / (data.n % 3) >= 0", extra=chain)
    lines = [
        {"type": "t.happened", "source": "s", "id": f"e{i}", "time": "2016-10-02T00:00:00Z",
         "data": {"n": i}}
        for i in range(40)
    ]  # fmt: skip
    tables = []
    for planned in (True, False):
        if not planned:
            monkeypatch.setattr(Appender, "can_plan", lambda self: False)
            (project / "log.db").unlink()
        rows = _import(project, rules, lines)
        with sqlite3.connect(project / "log.db") as con:
            tables.append(
                (
                    rows,
                    con.execute("SELECT * FROM rule_errors ORDER BY 1, 2").fetchall(),
                    con.execute(
                        "SELECT id, event_seq, rule, action, kind, status, last_error"
                        " FROM deliveries ORDER BY id"
                    ).fetchall(),
                )
            )
    assert tables[0] == tables[1]
    rows, errors, deliveries = tables[0]
    assert any("deeper than" in e[2] for e in errors)  # the chain's end
    assert any("division by zero" in e[2] or "divide" in e[2] for e in errors), errors
    assert any(d[5] == "dead" for d in deliveries) and any(d[5] == "pending" for d in deliveries)


def test_events_the_log_holds_already_are_not_planned(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing a file again (to complete an interrupted import, say) decides nothing for the
    events already recorded: their plans would be thrown away."""
    calls: list[str] = []
    real = Appender.plan

    def spy(self: Appender, event: dict) -> object:
        calls.append(event["id"])
        return real(self, event)

    monkeypatch.setattr(Appender, "plan", spy)
    lines = [
        {"type": "t.happened", "source": "s", "id": f"e{i}", "time": "2016-10-02T00:00:00Z",
         "data": {"n": i}}
        for i in range(30)
    ]  # fmt: skip
    first = _import(project, _rules(), lines)
    assert len(calls) == 30
    calls.clear()
    lines.append({**lines[0], "id": "new"})
    again = _import(project, _rules(), lines)
    assert calls == ["new"]
    assert again[: len(first)] == first and len(again) == len(first) + 2
