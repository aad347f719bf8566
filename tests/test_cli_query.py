"""`evflow replay` and `evflow query` on the shop example: formats, --as-of, errors."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

# the CLI must behave the same on every backend (SQLite; PostgreSQL with EVFLOW_TEST_PG)
pytestmark = pytest.mark.usefixtures("each_backend")


@pytest.fixture
def shop(project: Path) -> Path:
    shutil.copytree(REPO / "rules", project / "rules")
    result = run_cli(["import", "--no-dispatch", str(REPO / "sample_events.jsonl")])
    assert result.exit_code == 0, result.stderr
    return project


def test_replay_then_query_json(shop: Path) -> None:
    result = run_cli(["replay"])
    assert result.exit_code == 0, result.stderr
    assert "members: at seq" in result.stdout
    rows = json.loads(run_cli(["query", "members", "--format", "json"]).stdout)
    assert [r["key"] for r in rows] == ["u1", "u3"]
    assert set(rows[0]) == {"key", "state", "seq"}
    assert rows[0]["state"]["email"] == "minji@new.example.com"


def test_query_catches_up_without_replay(shop: Path) -> None:
    lines = run_cli(["query", "member_orders"]).stdout.splitlines()  # piped: jsonl
    rows = {r["key"]: r for r in map(json.loads, lines)}
    assert rows["u1"]["state"]["orders"] == 3
    run_cli(
        [
            "emit",
            "order.placed",
            "--no-dispatch",
            "--data",
            '{"orderId":"9","userid":"u3","productId":"p-2","orderAmt":5}',
        ]
    )
    one = json.loads(run_cli(["query", "member_orders", "u3", "--format", "jsonl"]).stdout)
    assert one["state"]["orders"] == 2 and one["state"]["amount"] == 325


def test_query_where_csv_and_table(shop: Path) -> None:
    out = run_cli(["query", "member_orders", "--where", "state.amount > 200", "--format", "csv"])
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["key"] for r in table] == ["u1", "u3"]
    assert table[0]["orders"] == "3"
    out = run_cli(["query", "members", "--format", "table"])
    assert out.exit_code == 0 and "Kim Minji" in out.stdout and "email" in out.stdout
    bad = run_cli(["query", "member_orders", "--where", "state.amount >"])
    assert bad.exit_code == 2, bad.stderr
    assert bad.stderr.startswith("evflow: error: --where: 1:15: "), bad.stderr


def test_as_of_before_and_after_deletion(shop: Path) -> None:
    def keys(*args: str) -> list[str]:
        result = run_cli(["query", "members", "--format", "json", *args])
        assert result.exit_code == 0, result.stderr
        return [r["key"] for r in json.loads(result.stdout)]

    assert keys("--as-of", "2016-10-07") == ["u1", "u2", "u3"]
    assert keys("--as-of", "2016-10-07T12:00:00+09:00") == ["u1", "u3"]
    assert keys("--as-of", "3") == ["u1", "u2"]
    assert keys() == ["u1", "u3"]


def test_unknown_projection_and_bad_as_of(shop: Path) -> None:
    result = run_cli(["query", "nope"])
    assert result.exit_code == 1
    assert "unknown projection 'nope' (known: members, member_orders)" in result.stderr
    assert run_cli(["replay", "nope"]).exit_code == 1
    assert run_cli(["query", "members", "--as-of", "yesterday"]).exit_code == 2
    assert run_cli(["query", "members", "--format", "xml"]).exit_code == 2


BROKEN = """
version: 1
projections:
  - name: amounts
    key: data.userid
    on:
      order.placed:
        inc: {total: "${{ data.orderAmt }}"}
"""


def test_query_behind_after_handler_error(project: Path) -> None:
    (project / "rules").mkdir()
    (project / "rules" / "a.yaml").write_text(BROKEN)
    run_cli(["emit", "order.placed", "--data", '{"userid":"u1","orderAmt":5}'])
    assert json.loads(run_cli(["query", "amounts", "u1"]).stdout)["state"] == {"total": 5}
    run_cli(["emit", "order.placed", "--data", '{"userid":"u1","orderAmt":"lots"}'])
    replayed = run_cli(["replay"])
    assert replayed.exit_code == 1
    assert "projection amounts: event seq 2 (order.placed): inc total" in replayed.stderr
    result = run_cli(["query", "amounts", "u1"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["state"] == {"total": 5}
    assert "behind the log by 1 event(s)" in result.stderr


def test_rebuild_and_definition_change_notice(shop: Path) -> None:
    assert run_cli(["replay"]).exit_code == 0
    result = run_cli(["replay", "members", "--rebuild"])
    assert result.exit_code == 0 and "rebuilt: --rebuild" in result.stdout
    text = (shop / "rules" / "shop.yaml").read_text()
    (shop / "rules" / "shop.yaml").write_text(
        text.replace("member.updated: merge", "member.updated: upsert")
    )
    result = run_cli(["replay"])
    assert "members: its definition changed; rebuilding it from the log" in result.stderr
    rows = json.loads(run_cli(["query", "members", "u1", "--format", "json"]).stdout)
    assert rows[0]["state"] == {"userid": "u1", "email": "minji@new.example.com"}


def test_python_handlers_are_imported_from_the_project_folder(
    project: Path, tmp_path_factory
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    home = project / "shop"
    (home / "rules").mkdir(parents=True)
    shutil.copytree(Path(__file__).parent / "fixtures" / "handlers", home / "handlers")
    (home / "rules" / "p.yaml").write_text(
        "version: 1\nprojections:\n  - name: words\n    key: data.id\n"
        "    on:\n      note.added:\n        python: handlers.tally:count_words\n"
    )
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    import os

    os.chdir(elsewhere)
    base = ["--rules", str(home / "rules")]
    assert run_cli([*base, "emit", "note.added", "-f", "id=n1", "-f", "text=a b c"]).exit_code == 0
    r = run_cli([*base, "query", "words", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)) == 1


def test_query_says_when_the_snapshot_is_from_an_older_definition(project: Path) -> None:
    (project / "rules").mkdir()
    (project / "rules" / "a.yaml").write_text(BROKEN)
    run_cli(["emit", "order.placed", "--data", '{"userid":"u1","orderAmt":5, "note":"x"}'])
    assert json.loads(run_cli(["query", "amounts", "u1"]).stdout)["state"] == {"total": 5}
    # the new definition fails on the event already folded: its rebuild cannot finish
    (project / "rules" / "a.yaml").write_text(BROKEN.replace("data.orderAmt", "data.note"))
    result = run_cli(["query", "amounts", "u1"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["state"] == {"total": 5}
    assert "built from an older definition" in result.stderr


def test_csv_headers_are_unambiguous_and_booleans_are_json(project: Path) -> None:
    (project / "rules").mkdir()
    (project / "rules" / "a.yaml").write_text(
        "version: 1\nprojections:\n  - name: p\n    key: data.id\n    on:\n      x: upsert\n"
    )
    run_cli(["emit", "x", "--data", '{"id": "k1", "seq": 9, "key": "z", "ok": true}'])
    lines = run_cli(["query", "p", "--format", "csv"]).stdout.splitlines()
    assert lines[0] == "key,seq,id,state.seq,state.key,ok"
    assert lines[1] == "k1,1,k1,9,z,true"
