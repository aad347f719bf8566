"""Issue 13 §5 for SQL read-model tables (issue 17): deterministic fault injection in a replay.

A trigger in the table's database makes one write fail — a row of the table, the table's own
checkpoint in ``evflow_checkpoints``, or the checkpoint of a table rebuilt aside — and the replay
meets it exactly where a full disk or a lost connection would hit. Then:

- the table's checkpoint is where it was, and the table holds exactly the snapshot as of that
  checkpoint (rows and checkpoint commit together);
- a replay under the same fault (the catch-up path) changes nothing either;
- a definition change that fails while its table is built aside leaves the live table as it was;
- once healed, a replay resumes, and the table equals a clean rebuild (``replay --rebuild``) and
  ``evflow query``.

Three places: SQLite (the table in the evflow database), PostgreSQL (the evflow database is
PostgreSQL, the table in it), MariaDB (the log in SQLite, the table in ``database: ${READ_DB}``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unique
from tests.hostile.helpers import as_json, cli, fail_writes, heal, ok, write_rules

sa = pytest.importorskip("sqlalchemy")

MYSQL_URL = os.environ.get("EVFLOW_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
PLACES = ["sqlite", "mariadb"]
if os.environ.get("EVFLOW_TEST_PG"):
    PLACES.insert(1, "postgres")


@dataclass
class Place:
    """Where the table lives: the URL the fault is injected through, an engine to read it."""

    kind: str
    url: str  # for tests.hostile.helpers.sql: a SQLite path, PostgreSQL ?schema= or MySQL URL
    engine: Any
    table: str
    database: str | None  # the rule file's table.database (None: the evflow database)

    @property
    def trigger(self) -> str:
        """The fault's trigger name: unique, as MariaDB's ``test`` database is shared."""
        return f"fault_{self.table}"

    def key(self) -> str:
        """The key column as a trigger names it."""
        return "NEW.`key`" if self.kind == "mariadb" else "NEW.key"

    def checkpoint(self, which: str | None = None) -> int | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT position FROM evflow_checkpoints WHERE table_name = :t"),
                {"t": which or self.table},
            ).first()
        return None if row is None else int(row[0])

    def rows(self) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows sorted by key) with the JSON state parsed."""
        with self.engine.connect() as conn:
            t = sa.Table(self.table, sa.MetaData(), autoload_with=conn)
            found = conn.execute(sa.select(t)).mappings().all()
        names = sorted(c.name for c in t.columns)
        out = []
        for row in found:
            values = {k: row[k] for k in names}
            if isinstance(values.get("state"), str | bytes):
                values["state"] = json.loads(values["state"])
            out.append(tuple(json.dumps(values[k], sort_keys=True, default=str) for k in names))
        return names, sorted(out)


@pytest.fixture(params=PLACES)
def place(
    request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Place]:
    table = unique("tally_")
    if request.param == "sqlite":
        (project / ".evflow").mkdir()
        path = project / ".evflow" / "evflow.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        yield Place("sqlite", str(path), engine, table, None)
        engine.dispose()
        return
    if request.param == "postgres":
        from tests.pg import base_url, fresh_schema_url, new_schema_name

        schema = new_schema_name()
        with fresh_schema_url(schema) as url:
            monkeypatch.setenv("EVFLOW_DB", url)
            engine = sa.create_engine(
                base_url().replace("postgresql://", "postgresql+psycopg://", 1),
                connect_args={"options": f"-c search_path={schema}"},
            )
            try:
                yield Place("postgres", url, engine, table, None)
            finally:
                engine.dispose()
        return
    engine = sa.create_engine(MYSQL_URL)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:  # .ci/run starts MariaDB: not reachable is a failure
        pytest.fail(f"MariaDB at {MYSQL_URL} is unreachable: {exc.orig}")
    monkeypatch.setenv("READ_DB", MYSQL_URL)
    try:
        yield Place("mariadb", MYSQL_URL, engine, table, "${READ_DB}")
    finally:
        with engine.begin() as conn:
            for name in sa.inspect(conn).get_table_names():
                if name.startswith(table):
                    conn.exec_driver_sql(f"DROP TABLE `{name}`")
            conn.execute(
                sa.text("DELETE FROM evflow_checkpoints WHERE table_name LIKE :p"),
                {"p": table + "%"},
            )
            for trigger in conn.exec_driver_sql("SHOW TRIGGERS").fetchall():
                if trigger[0].startswith(f"fault_{table}"):  # left by a test that crashed
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS `{trigger[0]}`")
        engine.dispose()


def rules(place: Place, columns: dict[str, str]) -> str:
    table: dict[str, Any] = {"name": place.table, "columns": columns, "state_column": "state"}
    if place.database:
        table["database"] = place.database
    projection = {
        "name": "tally",
        "key": "data.k",
        "on": {"item": {"inc": {"n": 1}, "set": {"last": "${{ data.i }}"}}},
        "table": table,
    }
    return "projections:\n  - " + json.dumps(projection) + "\n"


COLUMNS = {"n": "integer", "last": "integer"}


def emit(start: int, stop: int) -> None:
    for i in range(start, stop):
        data = json.dumps({"k": f"k{i % 4}", "i": i})
        ok("emit", "item", "--data", data, "--no-dispatch")


def query(as_of: int | None = None) -> list[dict[str, Any]]:
    args = ["query", "tally"] + (["--as-of", str(as_of)] if as_of is not None else [])
    return as_json(*args)  # type: ignore[no-any-return]


def assert_table_is_the_snapshot(place: Place, rows: list[dict[str, Any]]) -> None:
    """The table's rows are exactly these snapshot rows (key, seq, columns, state)."""
    _, found = place.rows()
    want = sorted(
        tuple(
            json.dumps(v, sort_keys=True)
            for v in (r["key"], r["state"].get("last"), r["state"]["n"], r["seq"], r["state"])
        )
        for r in rows
    )
    assert found == want


def fault(place: Place, point: str) -> tuple[str, str]:
    """(table, condition) of a fault injection point."""
    if point == "rows":  # one row of a batch cannot be written
        return place.table, f"{place.key()} = 'k3'"
    if point == "checkpoint":  # the rows could be, the table's checkpoint cannot
        return "evflow_checkpoints", f"NEW.table_name = '{place.table}'"
    raise AssertionError(point)


@pytest.mark.parametrize("point", ["rows", "checkpoint"])
def test_a_failed_table_write_leaves_the_checkpoint_and_a_resume_equals_a_rebuild(
    project: Path, place: Place, point: str
) -> None:
    write_rules(project, rules(place, COLUMNS))
    emit(0, 6)
    ok("replay")
    assert place.checkpoint() == 6
    assert_table_is_the_snapshot(place, query())
    emit(6, 12)
    table, when = fault(place, point)
    fail_writes(place.url, table, when, place.trigger)
    try:
        failed = cli("replay")
        assert failed.exit_code != 0 and "injected fault" in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr and place.table in failed.stderr
        # the snapshot went on; the table and its checkpoint did not move, together
        assert sum(r["state"]["n"] for r in query()) == 12
        assert place.checkpoint() == 6
        assert_table_is_the_snapshot(place, query(as_of=6))
        # the next replay catches the table up from the snapshot: under the fault, nothing
        again = cli("replay")
        assert again.exit_code != 0 and "injected fault" in again.stderr, again.stderr
        assert place.checkpoint() == 6
        assert_table_is_the_snapshot(place, query(as_of=6))
    finally:
        heal(place.url, table, place.trigger)
    ok("replay")
    assert place.checkpoint() == 12
    resumed = place.rows()
    assert_table_is_the_snapshot(place, query())
    ok("replay", "--rebuild")
    assert place.checkpoint() == 12
    assert place.rows() == resumed
    assert sorted((r["key"], r["state"]["n"], r["state"]["last"]) for r in query()) == [
        ("k0", 3, 8), ("k1", 3, 9), ("k2", 3, 10), ("k3", 3, 11),
    ]  # fmt: skip


def test_a_definition_change_that_fails_aside_leaves_the_live_table(
    project: Path, place: Place
) -> None:
    write_rules(project, rules(place, COLUMNS))
    emit(0, 8)
    ok("replay")
    before = place.rows()
    assert place.checkpoint() == 8
    # a new column: the table is rebuilt aside and swapped in; loading the aside table fails
    write_rules(project, rules(place, {**COLUMNS, "n2": "bigint"}))
    aside = place.table + "__evflow_new"
    when = f"NEW.table_name = '{aside}' AND NEW.position > 0"
    fail_writes(place.url, "evflow_checkpoints", when, place.trigger)
    try:
        failed = cli("replay")
        assert failed.exit_code != 0 and "injected fault" in failed.stderr, failed.stderr
        assert place.rows() == before and place.checkpoint() == 8
        assert place.checkpoint(aside) in (None, 0)  # never a loaded table aside
    finally:
        heal(place.url, "evflow_checkpoints", place.trigger)
    ok("replay")
    names, _ = place.rows()
    assert "n2" in names and place.checkpoint() == 8
    assert place.checkpoint(aside) is None
    rebuilt = place.rows()
    ok("replay", "--rebuild")
    assert place.rows() == rebuilt
