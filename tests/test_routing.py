"""Rules at work on emit and import: chains, causation, depth limit, dry runs, windows, explain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evflow import Evflow
from tests.conftest import REPO, run_cli

# the CLI must behave the same on every backend (SQLite; PostgreSQL with EVFLOW_TEST_PG)
pytestmark = pytest.mark.usefixtures("each_backend")

CHAIN = """
version: 1
rules:
  - name: ship
    on: order.placed
    then:
      - emit: shipment.requested
        subject: ${{ data.orderId }}
        data:
          orderId: ${{ data.orderId }}
          amount: ${{ data.amt }}
          label: order ${{ data.orderId }}
  - name: pack
    on: shipment.requested
    then:
      - emit: parcel.packed
        data: {orderId: "${{ data.orderId }}"}
"""


def write_rules(project: Path, text: str, name: str = "r.yaml") -> None:
    (project / "rules").mkdir(exist_ok=True)
    (project / "rules" / name).write_text(text)


def log(db: str | None = None) -> list[dict]:
    args = ["log", "--format", "jsonl"] if db is None else ["--db", db, "log", "--format", "jsonl"]
    return [json.loads(x) for x in run_cli(args).stdout.splitlines()]


def test_chain_with_causation_and_typed_templates(project: Path) -> None:
    write_rules(project, CHAIN)
    r = run_cli(["emit", "order.placed", "-f", "orderId=o-1", "-f", "amt=150", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert [t["event"]["type"] for t in out["triggered"]] == ["shipment.requested", "parcel.packed"]
    order, shipment, parcel = log()
    assert shipment["data"] == {"orderId": "o-1", "amount": 150, "label": "order o-1"}
    assert shipment["subject"] == "o-1"
    assert shipment["causationid"] == order["id"] and parcel["causationid"] == shipment["id"]
    assert shipment["correlationid"] == parcel["correlationid"] == order["id"]
    assert (shipment["evflowrule"], parcel["evflowrule"]) == ("ship", "pack")
    assert shipment["time"] == order["time"]
    shown = json.loads(run_cli(["show", order["id"], "--format", "json"]).stdout)
    assert [(c["depth"], c["event"]["type"]) for c in shown["caused"]] == [
        (1, "shipment.requested"),
        (2, "parcel.packed"),
    ]


def test_chain_deeper_than_16_stops_with_a_rule_error(project: Path) -> None:
    write_rules(
        project,
        """
version: 1
rules:
  - name: loop
    on: ping
    then:
      - emit: ping
        data: {n: "${{ data.n + 1 }}"}
""",
    )
    r = run_cli(["emit", "ping", "-f", "n=0"])
    # the chain is recorded up to the limit, and stops there with a rule error (issue 13)
    assert r.exit_code == 0
    assert "deeper than 16" in r.stderr
    events = log()
    assert [e["data"]["n"] for e in events] == list(range(17))
    shown = json.loads(run_cli(["show", "17", "--format", "json"]).stdout)
    assert "deeper than 16" in shown["rule_errors"][0]["message"]
    # the cycle is also a validation warning
    v = run_cli(["rules", "validate", "--format", "json"])
    assert any(p["severity"] == "warning" and "cycle" in p["message"] for p in json.loads(v.stdout))


def test_dry_run_records_nothing_and_shows_what_would_happen(project: Path) -> None:
    write_rules(project, CHAIN)
    r = run_cli(
        [
            "emit",
            "order.placed",
            "-f",
            "orderId=o-9",
            "-f",
            "amt=5",
            "--dry-run",
            "--format",
            "json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dry_run"] is True
    assert [t["event"]["type"] for t in out["triggered"]] == ["shipment.requested", "parcel.packed"]
    assert {m["rule"]: m["matched"] for m in out["matches"]} == {"ship": True, "pack": True}
    assert log() == []
    text = run_cli(["emit", "order.placed", "-f", "orderId=o-9", "-f", "amt=5", "--dry-run"]).stdout
    assert text.startswith("would record order.placed") and "rule ship: match" in text


def test_example_scenario_on_the_sample_events(project: Path) -> None:
    import shutil

    shutil.copytree(REPO / "rules", project / "rules")
    r = run_cli(["import", str(REPO / "sample_events.jsonl"), "--no-dispatch", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    events = log()
    orders = [e for e in events if e["type"] == "order.placed"]
    shipments = [e for e in events if e["type"] == "shipment.requested"]
    sales = [e for e in events if e["type"] == "sales.notified"]
    assert len(shipments) == len(orders) == 5
    assert {e["data"]["orderId"] for e in sales} == {
        o["data"]["orderId"] for o in orders if o["data"]["orderAmt"] > 100
    }
    deliveries = (
        json.loads(run_cli(["deliveries", "--format", "json"]).stdout)
        if run_cli(["deliveries", "--help"]).exit_code == 0
        else None
    )
    if deliveries is not None:
        mail = [d for d in deliveries if d["rule"] == "mail-on-order"]
        # o-1001 was placed on 2016-09-28 (before the mail rule's start): no mail for it
        assert len(mail) == 4


def test_windows_judged_in_seoul_on_utc_events_and_at(project: Path) -> None:
    import shutil

    shutil.copytree(REPO / "rules", project / "rules")

    def mail_matches(time: str, at: str | None = None) -> bool:
        args = [
            "rules",
            "explain",
            "order.placed",
            "-f",
            "orderAmt=1",
            "--time",
            time,
            "--format",
            "json",
        ]
        if at:
            args += ["--at", at]
        out = json.loads(run_cli(args).stdout)
        return next(r for r in out["rules"] if r["rule"] == "mail-on-order")["matched"]

    assert mail_matches("2016-09-30T15:00:00Z")  # midnight in Seoul
    assert not mail_matches("2016-09-30T14:59:59Z")
    assert mail_matches("2016-09-01T00:00:00Z", at="2017-01-01T00:00:00Z")
    explained = run_cli(
        [
            "rules",
            "explain",
            "order.placed",
            "-f",
            "orderAmt=1",
            "--time",
            "2016-09-30T14:59:59Z",
            "--format",
            "table",
        ]
    )
    assert "mail-on-order: no (window): before from 2016-10-01T00:00:00+09:00" in explained.stdout
    assert "big-order-to-sales: no (filter)" in explained.stdout


def test_filter_errors_do_not_match_and_are_reported(project: Path) -> None:
    import shutil

    shutil.copytree(REPO / "rules", project / "rules")
    r = run_cli(
        ["emit", "order.placed", "-f", "orderId=1", "-f", "productId=p", "-f", "userid=u"]
    )  # no orderAmt
    assert r.exit_code == 0
    assert "big-order-to-sales" in r.stderr and "no such key" in r.stderr
    explained = json.loads(run_cli(["rules", "explain", "order.placed", "--format", "json"]).stdout)
    sales = next(x for x in explained["rules"] if x["rule"] == "big-order-to-sales")
    assert sales["matched"] is False and "filter error" in sales["reason"]


def test_rules_list_states(project: Path) -> None:
    write_rules(
        project,
        """
version: 1
rules:
  - name: old
    on: a
    active: {from: 2010-01-01, until: 2011-01-01}
    then: [{emit: b}]
  - name: future
    on: a
    active: {from: 2099-01-01}
    then: [{emit: b}]
  - name: always
    on: [a, "c.*"]
    if: data.x > 1
    then: [{emit: b}]
""",
    )
    rows = json.loads(run_cli(["rules", "list", "--format", "json"]).stdout)
    assert {r["name"]: r["state"] for r in rows} == {
        "old": "expired",
        "future": "pending",
        "always": "active",
    }
    at = json.loads(
        run_cli(["rules", "list", "--at", "2010-06-01T00:00:00Z", "--format", "json"]).stdout
    )
    assert {r["name"]: r["state"] for r in at}["old"] == "active"
    always = next(r for r in rows if r["name"] == "always")
    assert always["on"] == ["a", "c.*"] and always["if"] == "data.x > 1"
    assert "always" in run_cli(["rules", "list", "--format", "table"]).stdout


def test_validate_formats_and_exit_codes(project: Path) -> None:
    write_rules(
        project,
        "version: 1\nrules:\n  - name: x\n    on: a\n    actve: {}\n    then: [{emit: b}]\n",
    )
    r = run_cli(["rules", "validate"])
    assert r.exit_code == 3
    assert "rules/r.yaml:5:5" in r.stdout and "did you mean 'active'" in r.stdout
    j = json.loads(run_cli(["rules", "validate", "--format", "json"]).stdout)
    assert j[0]["line"] == 5 and j[0]["column"] == 5 and j[0]["file"].endswith("r.yaml")
    assert set(j[0]) >= {"file", "line", "column", "rule", "severity", "message"}
    g = run_cli(["rules", "validate", "--format", "github"]).stdout
    assert g.startswith("::error file=") and ",line=5,col=5::" in g
    assert (
        run_cli(["emit", "a"]).exit_code == 3
    )  # emitting with broken rules refuses, records nothing
    (project / "rules" / "r.yaml").unlink()
    assert run_cli(["rules", "validate"]).exit_code == 0
    assert run_cli(["rules", "validate", "nope.yaml"]).exit_code == 2


WINDOWED = """
version: 1
defaults: {timezone: Asia/Seoul}
rules:
  - name: w
    on: e
    active: {from: 2020-01-01, until: 2020-02-01, cron: "* 9-17 * * MON-FRI"}
    if: data.n > 10
    then: [{emit: f, data: {n: "${{ data.n }}"}}]
"""


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=0, max_value=20),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 45),
)
def test_match_is_the_same_live_dry_run_and_as_of(tmp_path_factory, n: int, minutes: int) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("prop")
    write_rules(base, WINDOWED)
    t = datetime(2019, 12, 25, tzinfo=UTC).timestamp() + minutes * 60
    when = datetime.fromtimestamp(t, UTC).isoformat()
    raw = {"type": "e", "time": when, "data": {"n": n}}
    with Evflow(db=str(base / "db.sqlite"), rules=base / "rules") as flow:
        dry = flow.emit(raw, dry_run=True)
        as_of = flow.emit(
            {**raw, "time": "2000-01-01T00:00:00Z"}, dry_run=True, at=datetime.fromisoformat(when)
        )
        live = flow.emit(raw)
    verdicts = [[m.matched for m in o.matches] for o in (dry, as_of, live)]
    assert verdicts[0] == verdicts[1] == verdicts[2]
    assert len(live.derived) == int(verdicts[2] == [True])


def test_a_failing_emit_template_records_the_cause_and_names_the_rule(project: Path) -> None:
    write_rules(project, CHAIN)
    r = run_cli(["emit", "order.placed", "-f", "orderId=o-1"])  # the template needs data.amt
    assert r.exit_code == 0
    assert "rule ship: emit shipment.requested (rules/r.yaml:7:9): no such key: amt" in r.stderr
    assert [e["type"] for e in log()] == ["order.placed"]


def test_derived_ids_are_uuid5_of_cause_rule_and_action() -> None:
    import uuid

    from evflow.core.routing import derived_id

    cause = {"source": "shop/orders", "id": "o-1"}
    namespace = uuid.UUID("6f1f6a52-3c2e-4d8e-9a51-8f3f0c6b7a10")
    assert derived_id(cause, "ship", 0) == str(uuid.uuid5(namespace, "shop/orders\no-1\nship\n0"))
    assert derived_id(cause, "ship", 0) != derived_id(cause, "ship", 1)


def test_show_displays_the_filter_errors_recorded_with_the_event(project: Path) -> None:
    import shutil

    shutil.copytree(REPO / "rules", project / "rules")
    run_cli(["emit", "order.placed", "-f", "orderId=1", "-f", "productId=p", "-f", "userid=u"])
    shown = json.loads(run_cli(["show", "1", "--format", "json"]).stdout)
    assert shown["rule_errors"] == [
        {"rule": "big-order-to-sales", "message": "filter error: no such key: orderAmt"}
    ]
    table = run_cli(["show", "1", "--format", "table"]).stdout
    assert "big-order-to-sales: filter error: no such key: orderAmt" in table


def test_a_log_with_derived_events_round_trips_through_import(project: Path) -> None:
    """Thousands of lines (appends written in several batches): each derived event in the file
    is found already recorded by routing its cause, never appended twice."""
    write_rules(project, CHAIN)
    lines = [
        json.dumps({"type": "order.placed", "id": f"o{i}", "data": {"orderId": i, "amt": i}})
        for i in range(1200)
    ]
    assert run_cli(["import", "-", "--format", "json"], stdin="\n".join(lines)).exit_code == 0
    exported = run_cli(["log", "--format", "jsonl"]).stdout
    r = run_cli(["--db", "copy.db", "import", "-", "--format", "json"], stdin=exported)
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    # an export is history: every line recorded as it is, no rule runs (issue 13)
    assert (summary["recorded"], summary["duplicates"], summary["history"]) == (3600, 0, 3600)
    again = run_cli(["--db", "copy.db", "log", "--format", "jsonl"]).stdout
    assert again == exported
    # rerouted, each derived event in the file is found already recorded by routing its cause
    r = run_cli(
        ["--db", "copy2.db", "import", "-", "--reroute", "--format", "json"], stdin=exported
    )
    summary = json.loads(r.stdout)
    assert (summary["recorded"], summary["duplicates"]) == (1200, 2400)
