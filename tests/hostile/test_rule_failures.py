"""Issue 13 §1: a rule's failure never loses or blocks the cause.

The producer does not depend on the rules being right: an event whose rule fails (filter error,
template error in any action, CEL budget, a chain deeper than the limit) is recorded, with every
other rule's effects and the failure itself (``evflow show``); emit and import warn and exit 0
(``--strict``: 1, still recorded). A failed ``emit`` action is a failed derivation that
``evflow deliveries`` lists and ``evflow retry`` re-runs once the rule is fixed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.helpers import (
    as_json,
    cli,
    deliveries,
    events,
    ok,
    rule_errors,
    write_rules,
)

pytestmark = pytest.mark.usefixtures("each_backend")

SHIP = """\
  - name: ship
    on: order.placed
    then:
      - emit: shipment.requested
        subject: ${{ data.orderId }}
        data: {orderId: "${{ data.orderId }}"}
"""
AUDIT = """\
  - name: audit
    on: order.placed
    then:
      - emit: order.audited
        data: {user: "${{ data.userid }}"}
      - run: [/bin/true]
"""
NOTE_SHIPMENT = """\
  - name: note
    on: shipment.requested
    then:
      - emit: shipment.noted
        data: {orderId: "${{ data.orderId }}"}
"""
# a filter over the cross product of a list: CEL's iteration budget runs out
BUDGET = "data.xs.map(x, data.xs.map(y, x * y)).size() > 0"
BIG_LIST = {"xs": list(range(3000))}


def types() -> list[str]:
    return [e["type"] for e in events()]


def test_the_example_order_without_order_id_is_recorded(project: Path) -> None:
    """The issue's own case: ship-on-order cannot render, the order is recorded anyway."""
    ok("init")
    result = cli("emit", "order.placed", "--data", '{"userid": "u1"}', "--no-dispatch")
    assert result.exit_code == 0, result.stderr
    assert "ship-on-order" in result.stderr and "orderId" in result.stderr
    assert "order.placed" in types()
    [order] = [e for e in events() if e["type"] == "order.placed"]
    errors = rule_errors(order["seq"])
    assert any(e["rule"] == "ship-on-order" and "orderId" in e["message"] for e in errors)


def test_a_failing_emit_template_keeps_the_event_and_other_rules_effects(project: Path) -> None:
    write_rules(project, "rules:\n" + SHIP + AUDIT)
    result = cli("emit", "order.placed", "--data", '{"userid": "u1"}', "--no-dispatch")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "ship" in line]
    assert warnings and "orderId" in warnings[0] and "Traceback" not in result.stderr
    assert types() == ["order.placed", "order.audited"]
    [error] = rule_errors(1)
    assert error["rule"] == "ship" and "orderId" in error["message"]
    # the other rule's run action is owed as usual; the failed derivation is listed too
    listed = {(d["rule"], d["action"]): d for d in deliveries()}
    assert listed[("audit", 1)]["status"] == "pending"
    failed = listed[("ship", 0)]
    assert failed["kind"] == "emit"
    assert failed["status"] == "dead" and "orderId" in failed["last_error"]


def test_strict_exits_1_and_still_records(project: Path) -> None:
    write_rules(project, "rules:\n" + SHIP)
    result = cli("emit", "order.placed", "--data", "{}", "--strict", "--no-dispatch")
    assert result.exit_code == 1
    assert types() == ["order.placed"]
    assert rule_errors(1)


def test_import_warns_records_every_line_and_strict_exits_1(project: Path) -> None:
    write_rules(project, "rules:\n" + SHIP)
    lines = "\n".join(
        json.dumps({"type": "order.placed", "id": f"o{i}", "source": "shop", "data": data})
        for i, data in enumerate([{"orderId": "a"}, {}, {"orderId": "c"}])
    )
    result = cli("import", "-", "--no-dispatch", stdin=lines)
    assert result.exit_code == 0, result.stderr
    assert "ship" in result.stderr and "orderId" in result.stderr
    assert types() == [
        "order.placed", "shipment.requested", "order.placed", "order.placed", "shipment.requested",
    ]  # fmt: skip
    assert [e["rule"] for e in rule_errors("o1")] == ["ship"]
    strict = cli(
        "import", "-", "--no-dispatch", "--strict", stdin=lines.replace('"id": "o', '"id": "p')
    )
    assert strict.exit_code == 1
    assert len(events()) == 10


@pytest.mark.parametrize(
    "rule",
    [
        # a filter that fails (a missing field): no match, recorded
        "  - name: bad\n    on: order.placed\n    if: data.missing.deeper > 1\n"
        "    then:\n      - emit: never\n",
        # the CEL iteration budget in a filter
        f"  - name: bad\n    on: order.placed\n    if: {BUDGET}\n    then:\n      - emit: never\n",
        # the CEL iteration budget in an emit template
        "  - name: bad\n    on: order.placed\n    then:\n      - emit: never\n"
        "        data: {n: '${{ data.xs.map(x, data.xs.map(y, x * y)).size() }}'}\n",
        # a template failing in a run action's argv (rendered at dispatch; recorded there)
        "  - name: bad\n    on: order.placed\n    then:\n"
        "      - run: [/bin/echo, '${{ data.missing.deeper }}']\n",
    ],
    ids=["filter-error", "filter-budget", "emit-budget", "run-template"],
)
def test_any_failing_rule_leaves_the_event_and_the_other_rules(project: Path, rule: str) -> None:
    write_rules(project, "rules:\n" + rule + AUDIT)
    result = cli("emit", "order.placed", "--data", json.dumps({"userid": "u", **BIG_LIST}))
    assert result.exit_code == 0, result.stderr
    assert "bad" in result.stderr and "Traceback" not in result.stderr
    assert types() == ["order.placed", "order.audited"]
    shown = as_json("show", "1")
    failures = [e for e in shown["rule_errors"] if e["rule"] == "bad"]
    failures += [d for d in shown["deliveries"] if d["rule"] == "bad" and d["status"] != "done"]
    assert failures, shown
    strict = cli(
        "emit", "order.placed", "--data", json.dumps({"userid": "u", **BIG_LIST}), "--strict"
    )
    assert strict.exit_code == 1 and len(types()) == 4


def test_a_chain_deeper_than_the_limit_records_the_cause(project: Path) -> None:
    write_rules(
        project,
        "rules:\n"
        "  - name: ping\n    on: ping\n    then:\n      - emit: pong\n"
        "  - name: pong\n    on: pong\n    then:\n      - emit: ping\n" + AUDIT,
    )
    result = cli("emit", "ping", "--id", "p1", "--source", "test")
    assert result.exit_code == 0, result.stderr
    assert "deeper" in result.stderr
    recorded = events()
    assert recorded[0]["id"] == "p1"
    # the chain is recorded up to the limit, and where it stopped says why
    assert 2 <= len(recorded) <= 20
    errors = [e for event in recorded for e in rule_errors(event["seq"])]
    assert any("deeper" in e["message"] for e in errors), errors
    assert cli("emit", "ping", "--id", "p2", "--source", "test", "--strict").exit_code == 1


def test_a_failed_derivation_is_retried_after_the_rule_is_fixed(
    project: Path, each_backend: str
) -> None:
    broken = SHIP.replace("data.orderId", "data.order_id.value")
    write_rules(project, "rules:\n" + broken + NOTE_SHIPMENT)
    cause = [
        "order.placed", "--id", "o-1", "--source", "shop", "--subject", "o-1",
        "--time", "2024-05-01T10:00:00+02:00", "--data", '{"orderId": "o-1"}',
    ]  # fmt: skip
    assert cli("emit", *cause).exit_code == 0
    [failed] = [d for d in deliveries() if d["rule"] == "ship"]
    assert failed["kind"] == "emit" and failed["status"] == "dead"
    assert "order_id" in failed["last_error"]
    # fixing the rule is not enough by itself: nothing is appended behind the user's back
    write_rules(project, "rules:\n" + SHIP + NOTE_SHIPMENT)
    assert [e["type"] for e in events()] == ["order.placed"]
    retried = cli("retry", str(failed["id"]))
    assert retried.exit_code == 0, retried.stderr
    ok("run", "--once")
    recorded = events()
    assert [e["type"] for e in recorded] == ["order.placed", "shipment.requested", "shipment.noted"]
    [done] = [d for d in deliveries() if d["rule"] == "ship"]
    assert done["status"] == "done" and done["last_error"] is None
    # the derived event is exactly the one a correct rule would have appended at the time
    oracle_db = str(project / "oracle.db")
    ok("--db", oracle_db, "emit", *cause)
    expected = events("--db", oracle_db)
    keys = ("id", "source", "type", "time", "subject", "causationid", "correlationid",
            "evflowrule", "data")  # fmt: skip
    assert [{k: e.get(k) for k in keys} for e in recorded] == [
        {k: e.get(k) for k in keys} for e in expected
    ]
    # and it is never appended twice
    ok("run", "--once")
    assert len(events()) == 3


def test_retry_dead_brings_back_failed_derivations_of_imports_too(project: Path) -> None:
    write_rules(project, "rules:\n" + SHIP.replace("data.orderId", "data.order_id.value"))
    lines = "\n".join(
        json.dumps({"type": "order.placed", "id": f"o{i}", "source": "shop",
                    "data": {"orderId": f"o{i}"}})
        for i in range(3)
    )  # fmt: skip
    assert cli("import", "-", stdin=lines).exit_code == 0
    failed = [d for d in deliveries() if d["kind"] == "emit"]
    # a template cannot succeed on a second try: dead at once, like a run action's template
    assert [d["status"] for d in failed] == ["dead"] * 3
    write_rules(project, "rules:\n" + SHIP)
    retried = cli("retry", "--dead")
    assert retried.exit_code == 0 and "3" in retried.stdout
    ok("run", "--once")
    derived = [e for e in events() if e["type"] == "shipment.requested"]
    assert sorted(e["causationid"] for e in derived) == ["o0", "o1", "o2"]
    assert [e["seq"] for e in events()] == [1, 2, 3, 4, 5, 6]
