"""Issue 13 §2: copies, restores and retries never re-fire side effects or duplicate events.

- An export of an evflow log (lines carrying ``seq``/``recordedtime``) imported elsewhere is
  history: recorded as it is, lineage kept, no rule runs, no delivery; ``--reroute`` runs them.
- A line without an ``id`` gets one derived from its content: importing a file twice records it
  once.
- The ``evflow:`` sources are evflow's own: an outside event claiming one is refused at emit,
  import (and NATS ingest, see test_nats_ingest), unless it is history.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.dispatch.helpers import answer, http_server
from tests.hostile.helpers import (
    as_json,
    assert_one_line_error,
    cli,
    deliveries,
    events,
    ok,
    write_rules,
)

pytestmark = pytest.mark.usefixtures("each_backend")


def shop_rules(project: Path, hook_url: str) -> None:
    write_rules(
        project,
        "rules:\n"
        "  - name: ship\n    on: order.placed\n    then:\n"
        "      - emit: shipment.requested\n        data: {orderId: '${{ data.orderId }}'}\n"
        "  - name: notify\n    on: order.placed\n    then:\n"
        f"      - http: {hook_url}/notify\n        timeout: 5s\n"
        "  - name: track\n    on: shipment.requested\n    then:\n"
        f"      - http: {hook_url}/track\n        timeout: 5s\n",
    )


def emit_orders(count: int, *opts: str) -> None:
    for i in range(count):
        ok(*opts, "emit", "order.placed", "--id", f"o{i}", "--source", "shop",
           "--data", json.dumps({"orderId": f"o{i}"}))  # fmt: skip


def test_a_log_export_imported_elsewhere_is_history(project: Path, other_db: str) -> None:
    with http_server(answer(200)) as hook:
        shop_rules(project, hook.url)
        emit_orders(3)
        assert hook.count() == 6  # notify + track per order
        export = ok("log", "--format", "jsonl").stdout
        original = events()
        imported = cli("--db", other_db, "import", "-", "--format", "json", stdin=export)
        assert imported.exit_code == 0, imported.stderr
        summary = json.loads(imported.stdout)
        assert summary["history"] == 6 and summary["deliveries"] == 0
        assert summary["derived"] == 0
        table = ok("--db", other_db, "import", "-", stdin=export).stdout
        assert "history" in table  # the second time: all already there, said in words
        assert hook.count() == 6  # not one webhook call more
        assert deliveries("--db", other_db) == []
        # recorded as they are: same identity, times, lineage and data, in the same order
        assert events("--db", other_db) == original


def test_reroute_runs_the_rules_on_history(project: Path, other_db: str) -> None:
    with http_server(answer(200)) as hook:
        shop_rules(project, hook.url)
        emit_orders(2)
        export = ok("log", "--format", "jsonl").stdout
        before = hook.count()
        summary = json.loads(
            ok(
                "--db", other_db, "import", "-", "--reroute", "--format", "json", stdin=export
            ).stdout  # fmt: skip
        )
        assert (summary["recorded"], summary["duplicates"], summary["history"]) == (2, 2, 0)
        # the derived events are in the export already: routing finds them, appends nothing new
        assert len(events("--db", other_db)) == 4
        assert hook.count() == before + 4


def test_plain_cloudevents_are_routed_as_before(project: Path) -> None:
    with http_server(answer(200)) as hook:
        shop_rules(project, hook.url)
        lines = "\n".join(
            json.dumps({"specversion": "1.0", "type": "order.placed", "source": "shop",
                        "id": f"p{i}", "data": {"orderId": f"p{i}"}})
            for i in range(2)
        )  # fmt: skip
        summary = as_json("import", "-", stdin=lines)
        assert summary["recorded"] == 2 and summary["derived"] == 2
        assert summary.get("history", 0) == 0
        assert hook.count() == 4


def test_a_line_without_id_gets_an_id_from_its_content(project: Path, other_db: str) -> None:
    write_rules(project, "rules: []\n")
    lines = (
        '{"type": "meter.read", "source": "m", "time": "2024-01-01T00:00:00Z", "data": {"v": 1}}\n'
        '{"type": "meter.read", "source": "m", "time": "2024-01-01T00:01:00Z", "data": {"v": 2}}\n'
        '{"type": "meter.read", "source": "m", "data": {"v": 3}}\n'
    )
    first = as_json("import", "-", stdin=lines)
    assert first["recorded"] == 3
    again = as_json("import", "-", stdin=lines)
    assert (again["recorded"], again["duplicates"]) == (0, 3)
    recorded = events()
    assert len(recorded) == 3
    ids = [e["id"] for e in recorded]
    assert len(set(ids)) == 3
    # the id is a function of the line alone: the same in any other log
    ok("--db", other_db, "import", "-", stdin=lines)
    assert [e["id"] for e in events("--db", other_db)] == ids


@pytest.mark.parametrize(
    "source",
    ["evflow:rule/ship", "evflow:schedule/nightly", "evflow:rule/anything-else"],
)
def test_emit_refuses_evflow_sources(project: Path, source: str) -> None:
    write_rules(project, "rules: []\n")
    result = cli("emit", "x.y", "--source", source, "--id", "whatever")
    assert_one_line_error(result, 2, "source")
    assert events() == []


def test_a_forged_derived_id_cannot_suppress_the_real_derived_event(project: Path) -> None:
    with http_server(answer(200)) as hook:
        shop_rules(project, hook.url)
        # what the derived event of o-1 will be: learn it in a throwaway log
        scratch = str(project / "scratch.db")
        ok("--db", scratch, "emit", "order.placed", "--id", "o-1", "--source", "shop",
           "--data", '{"orderId": "o-1"}', "--no-dispatch")  # fmt: skip
        [derived] = [e for e in events("--db", scratch) if e["type"] == "shipment.requested"]
        forged = cli("emit", "shipment.requested", "--source", derived["source"],
                     "--id", derived["id"], "--data", '{"orderId": "forged"}')  # fmt: skip
        assert_one_line_error(forged, 2, "source")
        line = json.dumps({"type": "shipment.requested", "source": derived["source"],
                           "id": derived["id"], "data": {"orderId": "forged"}})  # fmt: skip
        assert_one_line_error(cli("import", "-", stdin=line), 2, "<stdin>:1:", "source")
        skipped = cli("import", "-", "--skip-invalid", stdin=line)
        assert skipped.exit_code in (0, 1) and "<stdin>:1:" in skipped.stderr
        assert events() == []
        ok("emit", "order.placed", "--id", "o-1", "--source", "shop",
           "--data", '{"orderId": "o-1"}', "--no-dispatch")  # fmt: skip
        [real] = [e for e in events() if e["type"] == "shipment.requested"]
        assert real["data"] == {"orderId": "o-1"} and real["id"] == derived["id"]


def test_a_forged_schedule_occurrence_cannot_suppress_the_real_one(project: Path) -> None:
    write_rules(
        project,
        "schedules:\n  - name: nightly\n    cron: '0 2 * * *'\n    emit: report.requested\n",
    )
    forged = cli("emit", "report.requested", "--source", "evflow:schedule/nightly",
                 "--id", "schedule:nightly:2024-01-02T02:00:00Z")  # fmt: skip
    assert_one_line_error(forged, 2, "source")
    ok("tick", "--now", "2024-01-01T00:00:00Z")
    ok("tick", "--now", "2024-01-02T02:00:30Z")
    reports = [e for e in events() if e["type"] == "report.requested"]
    assert [e["source"] for e in reports] == ["evflow:schedule/nightly"]


def test_history_lines_may_carry_evflow_sources(project: Path, other_db: str) -> None:
    write_rules(
        project,
        "rules:\n  - name: ship\n    on: order.placed\n    then:\n"
        "      - emit: shipment.requested\n",
    )
    ok("emit", "order.placed", "--id", "o1", "--source", "shop")
    export = ok("log", "--format", "jsonl").stdout
    assert "evflow:rule/ship" in export
    ok("--db", other_db, "import", "-", stdin=export)
    assert [e["source"] for e in events("--db", other_db)] == ["shop", "evflow:rule/ship"]
