"""SQL read-model tables (issue 17), the parts that need no database server: the ``table:``
section in ``rules validate`` and ``rules schema``, ``query --sql`` refusals, and SQLAlchemy kept
off the commands that do not need it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_cli
from tests.test_sql_tables import ORDER_COLUMNS, import_file, ok, query_rows, write_rules


def test_query_sql_needs_a_projection_with_a_table(project: Path) -> None:
    write_rules(project, {"columns": ORDER_COLUMNS})
    import_file(REPO / "sample_events.jsonl")
    r = run_cli(["query", "members", "--sql", "SELECT 1"])
    assert r.exit_code == 2 and "members" in r.stderr and "table" in r.stderr
    r = run_cli(["query", "member_orders", "--sql", "SELECT 1", "--as-of", "3"])
    assert r.exit_code == 2
    # without --sql, query keeps reading the JSON snapshot
    assert [r["key"] for r in query_rows("member_orders")] == ["u1", "u2", "u3"]


# --------------------------------------------------------------------------------------------
# SQLAlchemy stays off the paths that do not need it


def test_emit_import_and_log_never_import_sqlalchemy(project: Path) -> None:
    write_rules(project, {"columns": ORDER_COLUMNS})
    (project / "events.jsonl").write_text((REPO / "sample_events.jsonl").read_text())
    script = (
        "import sys\n"
        "from evflow.cli.entry import main\n"
        "def run(args):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, (args, exc.code)\n"
        "    print(args[0], 'sqlalchemy' in sys.modules, file=sys.stderr)\n"
        "run(sys.argv[1:])\n"
    )
    steps = [
        ["import", "events.jsonl"],
        ["emit", "order.placed", "--data", '{"userid":"u1","orderAmt":3,"productId":"p"}'],
        ["emit", "order.placed", "-f", "userid=u2", "-f", "productId=p", "-f", "orderAmt=3",
         "--no-dispatch"],
        ["log", "--format", "jsonl"],
        ["log", "--type", "order.*", "--limit", "2"],
        ["replay", "members"],  # a projection without a table
        ["query", "members", "--format", "json"],
    ]
    for args in steps:
        proc = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=project, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1] == f"{args[0]} False", (args, proc.stderr)
    # and the check has teeth: a projection with a table does import it
    proc = subprocess.run(
        [sys.executable, "-c", script, "replay", "member_orders"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )
    assert proc.stderr.strip().splitlines()[-1] == "replay True", proc.stderr


# --------------------------------------------------------------------------------------------
# rule files: validate and schema


def _problems(project: Path, table: dict[str, Any]) -> list[dict[str, Any]]:
    write_rules(project, table)
    r = run_cli(["rules", "validate", "--format", "json"])
    assert r.exit_code == 3, (r.stdout, r.stderr)
    return [p for p in json.loads(r.stdout) if p["severity"] == "error"]


def _position(project: Path, needle: str) -> tuple[int, int]:
    """Line and column (1-based) of the last occurrence of ``needle`` in the rule file."""
    found = None
    for number, line in enumerate((project / "rules" / "shop.yaml").read_text().splitlines(), 1):
        col = line.rfind(needle)
        if col >= 0:
            found = (number, col + 1)
    assert found is not None, needle
    return found


@pytest.mark.parametrize(
    ("table", "needle", "words"),
    [
        ({"columns": {"orders": "integr"}}, "integr", ["integr", "integer", "timestamp"]),
        ({"columns": {"Orders-1": "integer"}}, "Orders-1", ["Orders-1"]),
        ({"columns": {"key": "text"}}, "key: text", ["key"]),
        ({"columns": {"seq": "bigint"}}, "seq: bigint", ["seq"]),
        ({"columns": {"orders": "integer"}, "state_column": "orders"}, "orders", ["orders"]),
        ({"columns": {"orders": "integer"}, "indexes": [["amount"]]}, "amount", ["amount"]),
        ({"columns": {"orders": "integer"}, "name": "bad name;"}, "bad name;", ["name"]),
        ({"columns": {"orders": "integer"}, "database": "not a url"}, "not a url", ["database"]),
        ({"columns": {"orders": "integer"}, "database": "postgresql://h:port/db"}, "postgresql:",
         ["port"]),
        ({"columns": {"orders": "integer"}, "colums": {}}, "colums", ["colums"]),
        ({"columns": {}}, "{}", ["columns"]),
    ],
)
def test_rules_validate_checks_the_table_section(
    project: Path, table: dict[str, Any], needle: str, words: list[str]
) -> None:
    problems = _problems(project, table)
    assert problems, table
    line, column = _position(project, needle)
    first = problems[0]
    assert first["file"].endswith("shop.yaml") and first["rule"] == "member_orders"
    assert (first["line"], first["column"]) == (line, column), (first, needle)
    for word in words:
        assert word in first["message"], first["message"]


def test_a_valid_table_section_passes_validation(project: Path) -> None:
    write_rules(
        project,
        {
            "name": "orders_by_member",
            "database": "${READ_DB}",
            "columns": {
                "orders": "integer", "amount": "numeric", "last_product": "text",
                "last_order_time": "timestamp", "n": "bigint", "f": "float", "b": "boolean",
                "d": "date", "j": "json",
            },
            "state_column": "state",
            "indexes": [["amount"], ["last_order_time", "orders"]],
        },
    )
    r = run_cli(["rules", "validate"])
    assert r.exit_code == 0, r.stderr


def test_rules_schema_describes_the_table_section(project: Path) -> None:
    schema = json.loads(ok(["rules", "schema"]))
    table = schema["$defs"]["projection"]["properties"]["table"]
    props = table["properties"]
    assert {"name", "database", "columns", "state_column", "indexes"} <= set(props)
    assert table.get("additionalProperties") is False
    kinds = json.dumps(props["columns"])
    for kind in ("text", "integer", "bigint", "numeric", "float", "boolean", "timestamp", "date",
                 "json"):
        assert f'"{kind}"' in kinds
    assert props["columns"].get("description") and props["database"].get("description")
