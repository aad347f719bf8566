"""Issue 13 §3: a CEL evaluation error (budget exceeded included) is a non-match everywhere.

A filter that fails does not match (the event is recorded), a projection handler's ``if`` that
fails leaves the row as it was (replay goes on to the next event), a ``query --where`` that
fails on a row drops the row. And an integer beyond 64 bits in one data field does not make every
CEL filter on that event fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.helpers import as_json, cli, events, ok, rule_errors, write_rules

pytestmark = pytest.mark.usefixtures("each_backend")

BUDGET = "data.xs.map(x, data.xs.map(y, x * y)).size() > 0"
STATE_BUDGET = "state.xs.map(x, state.xs.map(y, x * y)).size() > 0"
BIG = {"xs": list(range(3000))}

PROJECTION = f"""\
projections:
  - name: tally
    key: data.k
    on:
      item.added:
        if: {BUDGET}
        inc: {{budgeted: 1}}
      item.counted:
        inc: {{n: 1}}
      item.kept:
        set: {{xs: "${{{{ data.xs }}}}"}}
"""


def test_a_filter_over_budget_does_not_match_and_the_event_is_recorded(project: Path) -> None:
    write_rules(
        project,
        "rules:\n"
        f"  - name: heavy\n    on: item.added\n    if: {BUDGET}\n    then:\n      - emit: never\n"
        "  - name: light\n    on: item.added\n    then:\n      - emit: item.seen\n",
    )
    result = cli("emit", "item.added", "--data", json.dumps(BIG))
    assert result.exit_code == 0, result.stderr
    assert "heavy" in result.stderr and "Traceback" not in result.stderr
    assert [e["type"] for e in events()] == ["item.added", "item.seen"]
    [error] = rule_errors(1)
    assert error["rule"] == "heavy" and "budget" in error["message"].lower()


def test_a_projection_if_over_budget_leaves_the_row_and_replay_goes_on(project: Path) -> None:
    write_rules(project, PROJECTION)
    ok("emit", "item.counted", "--data", '{"k": "a"}')
    ok("emit", "item.added", "--data", json.dumps({"k": "a", **BIG}))
    ok("emit", "item.counted", "--data", '{"k": "a"}')
    first = cli("replay")
    assert first.exit_code == 0, first.stderr
    assert "Traceback" not in first.stderr
    [row] = as_json("query", "tally")
    assert row["state"] == {"n": 2} and row["seq"] == 3
    # not stuck: later events still arrive
    ok("emit", "item.counted", "--data", '{"k": "a"}')
    assert cli("replay").exit_code == 0
    [row] = as_json("query", "tally")
    assert row["state"] == {"n": 3} and row["seq"] == 4
    # and a rebuild agrees with the incremental replay
    assert cli("replay", "--rebuild").exit_code == 0
    assert as_json("query", "tally") == [row]
    # so does --as-of, which folds in memory
    assert as_json("query", "tally", "--as-of", "4") == [row]


def test_query_where_that_fails_on_a_row_drops_the_row(project: Path) -> None:
    write_rules(project, PROJECTION)
    ok("emit", "item.kept", "--data", json.dumps({"k": "big", **BIG}))
    ok("emit", "item.kept", "--data", json.dumps({"k": "small", "xs": [1, 2]}))
    ok("emit", "item.counted", "--data", '{"k": "plain"}')
    ok("replay")
    result = cli("query", "tally", "--where", STATE_BUDGET, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [r["key"] for r in json.loads(result.stdout)] == ["small"]
    # a field missing on some rows: those rows are dropped, not the query
    missing = cli("query", "tally", "--where", "state.n > 0", "--format", "json")
    assert missing.exit_code == 0, missing.stderr
    assert [r["key"] for r in json.loads(missing.stdout)] == ["plain"]
    as_of = cli("query", "tally", "--where", STATE_BUDGET, "--as-of", "3", "--format", "json")
    assert as_of.exit_code == 0, as_of.stderr
    assert [r["key"] for r in json.loads(as_of.stdout)] == ["small"]


@pytest.mark.parametrize("big", [2**63, 2**64, 2**70, -(2**63) - 1, 10**40])
def test_a_big_integer_in_one_field_does_not_break_filters(project: Path, big: int) -> None:
    write_rules(
        project,
        "rules:\n"
        "  - name: small\n    on: m.read\n    if: data.n > 1\n    then:\n      - emit: small.ok\n"
        "  - name: text\n    on: m.read\n    if: event.subject == 's'\n    then:\n"
        "      - emit: subject.ok\n",
    )
    result = cli("emit", "m.read", "--subject", "s", "--data", json.dumps({"n": 5, "big": big}))
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    assert [e["type"] for e in events()] == ["m.read", "small.ok", "subject.ok"]
    # the number itself is kept exactly
    assert events()[0]["data"]["big"] == big
