"""Read models in a real SQL database (issue 17): projections kept as typed SQL tables.

Black-box tests through the CLI, on three targets:

- ``sqlite``: the table lives in the evflow database itself (no ``database:``);
- ``postgres``: evflow's log stays in SQLite, the table goes to PostgreSQL (``database:
  ${READ_DB}``, a fresh schema per test through evflow's ``?schema=`` URL parameter);
- ``mariadb``: the same with MariaDB (127.0.0.1:3306, root, empty password, database ``test``;
  a unique table name per test, dropped afterwards).

The tables are read back with SQLAlchemy (reflection, no evflow code) and compared with
``evflow query NAME --format json``: the same keys, ``seq``, typed columns and whole state.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, evflow_exe, run_cli, unique

sa = pytest.importorskip("sqlalchemy")

MYSQL_URL = os.environ.get("EVFLOW_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
TARGETS = ["sqlite", "mariadb"]
if os.environ.get("EVFLOW_TEST_PG"):
    TARGETS.insert(1, "postgres")

ORDER_COLUMNS = {
    "orders": "integer",
    "amount": "numeric",
    "last_product": "text",
    "last_order_time": "timestamp",
}
MEMBER_COLUMNS = {"userid": "text", "name": "text", "email": "text"}


# --------------------------------------------------------------------------------------------
# targets


@dataclass
class Target:
    """Where a test's tables live, and a SQLAlchemy engine to look at them."""

    kind: str
    project: Path
    database: str | None  # what the rule file says under table.database (None: evflow's db)
    engine: Any
    names: list[str] = field(default_factory=list)
    schema: str | None = None
    url: str | None = None  # READ_DB: the target's URL as the rule file gets it


    def name(self, base: str) -> str:
        """A table name unique to this test (MariaDB's ``test`` database is shared)."""
        table = f"{base}_{unique('')}"
        self.names.append(table)
        return table

    def checkpoint(self, table: str) -> int | None:
        """The table's own position, from ``evflow_checkpoints`` in the target database."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("evflow_checkpoints"):
                return None
            row = conn.execute(
                sa.text("SELECT position FROM evflow_checkpoints WHERE table_name = :t"),
                {"t": table},
            ).first()
        return None if row is None else int(row[0])

    def tables(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())

    def mine(self) -> set[str]:
        """This test's tables (aside tables carry the name of the table they replace)."""
        return {t for t in self.tables() if any(n in t for n in self.names)}

    def rows(self, table: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
        """(column names, rows by key) as the database holds them."""
        with self.engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            found = conn.execute(sa.select(t)).mappings().all()
        return [c.name for c in t.columns], {r["key"]: dict(r) for r in found}


def _drop_mysql(engine: Any, names: list[str]) -> None:
    with engine.begin() as conn:
        present = sa.inspect(conn).get_table_names()
        for name in present:
            if any(name.startswith(n) for n in names):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{name}`")
        if "evflow_checkpoints" in present:
            for n in names:
                conn.execute(
                    sa.text("DELETE FROM evflow_checkpoints WHERE table_name LIKE :p"),
                    {"p": n + "%"},
                )


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    if request.param == "sqlite":
        (project / ".evflow").mkdir()
        engine = sa.create_engine(f"sqlite:///{project / '.evflow' / 'evflow.db'}")
        yield Target("sqlite", project, None, engine)
        engine.dispose()
        return
    if request.param == "postgres":
        from tests.pg import base_url, fresh_schema_url, new_schema_name

        schema = new_schema_name()
        with fresh_schema_url(schema) as url:
            monkeypatch.setenv("READ_DB", url)
            engine = sa.create_engine(
                base_url().replace("postgresql://", "postgresql+psycopg://", 1),
                connect_args={"options": f"-c search_path={schema}"},
            )
            try:
                yield Target("postgres", project, "${READ_DB}", engine, schema=schema, url=url)
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
    t = Target("mariadb", project, "${READ_DB}", engine, url=MYSQL_URL)
    try:
        yield t
    finally:
        _drop_mysql(engine, t.names)
        engine.dispose()


# --------------------------------------------------------------------------------------------
# rule files and events


def table_section(
    target: Target, name: str, columns: dict[str, str], **extra: Any
) -> dict[str, Any]:
    section: dict[str, Any] = {"name": name, "columns": dict(columns)}
    if target.database is not None:
        section["database"] = target.database
    section.update(extra)
    return section


def write_rules(
    project: Path,
    orders_table: dict[str, Any] | None,
    members_table: dict[str, Any] | None = None,
    orders_set: dict[str, str] | None = None,
) -> None:
    """The example projections of rules/shop.yaml, with the given ``table:`` sections."""
    members: dict[str, Any] = {
        "name": "members",
        "key": "data.userid",
        "on": {"member.created": "upsert", "member.updated": "merge", "member.deleted": "delete"},
    }
    orders: dict[str, Any] = {
        "name": "member_orders",
        "key": "data.userid",
        "on": {
            "order.placed": {
                "inc": {"orders": 1, "amount": "${{ data.orderAmt }}"},
                "set": orders_set
                or {
                    "last_product": "${{ data.productId }}",
                    "last_order_time": "${{ event.time }}",
                },
            }
        },
    }
    if members_table is not None:
        members["table"] = members_table
    if orders_table is not None:
        orders["table"] = orders_table
    (project / "rules").mkdir(exist_ok=True)
    text = yaml.safe_dump({"version": 1, "projections": [members, orders]}, sort_keys=False)
    (project / "rules" / "shop.yaml").write_text(text)


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Shop-shaped events from benchmarks/generate.py: 20,000 and a 10,000 tail for 30,000."""
    sys.path.insert(0, str(REPO))
    from benchmarks.generate import events

    folder = tmp_path_factory.mktemp("events")
    stream = [json.dumps(e, separators=(",", ":")) for e in events(30_000, seed=17)]
    files = {}
    for n, lines in ((20_000, stream[:20_000]), (10_000, stream[20_000:])):
        path = folder / f"events-{n}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        files[n] = path
    return files


def ok(args: list[str]) -> str:
    r = run_cli(args)
    assert r.exit_code == 0, (args, r.stdout, r.stderr)
    return r.stdout


def import_file(path: Path) -> None:
    ok(["import", str(path), "--no-dispatch"])


def last_seq() -> int:
    return int(json.loads(ok(["stats", "--format", "json"]))["last_seq"])


# --------------------------------------------------------------------------------------------
# comparing a table with `evflow query --format json`


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:  # databases without time zones hold UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def same(kind: str, got: Any, want: Any) -> bool:
    """Does the column value ``got`` hold the state value ``want`` for a column of ``kind``?"""
    if want is None:
        return got is None
    if got is None:
        return False
    if kind in ("integer", "bigint"):
        return isinstance(got, int) and not isinstance(got, bool) and got == want
    if kind == "numeric":
        return Decimal(str(got)) == Decimal(str(want))
    if kind == "float":
        return float(got) == float(want)
    if kind == "boolean":
        return bool(got) is want
    if kind == "timestamp":
        return _utc(got) == _utc(want)
    if kind == "date":
        return str(got)[:10] == want
    if kind == "json":
        return _json(got) == want
    return got == want


def query_rows(name: str, as_of: int | None = None) -> list[dict[str, Any]]:
    args = ["query", name, "--format", "json"]
    if as_of is not None:
        args += ["--as-of", str(as_of)]
    return json.loads(ok(args))


def assert_table_matches(
    target: Target,
    table: str,
    expected: list[dict[str, Any]],
    columns: dict[str, str],
    state_column: str | None = None,
) -> None:
    names, rows = target.rows(table)
    assert {"key", "seq", *columns} <= set(names), names
    assert sorted(rows) == sorted(r["key"] for r in expected)
    for want in expected:
        got = rows[want["key"]]
        assert int(got["seq"]) == want["seq"], (want["key"], got, want)
        for column, kind in columns.items():
            value = want["state"].get(column)
            assert same(kind, got[column], value), (want["key"], column, got[column], value)
        if state_column is not None:
            assert _json(got[state_column]) == want["state"], want["key"]


def assert_table_equals_query(
    target: Target,
    table: str,
    name: str,
    columns: dict[str, str],
    state_column: str | None = None,
) -> list[dict[str, Any]]:
    expected = query_rows(name)
    assert expected, "an empty snapshot would prove nothing"
    assert_table_matches(target, table, expected, columns, state_column)
    return expected


# --------------------------------------------------------------------------------------------
# the table follows the snapshot


def test_sample_events_give_tables_equal_to_query(target: Target) -> None:
    orders, members = target.name("member_orders"), target.name("members")
    write_rules(
        target.project,
        table_section(
            target,
            orders,
            ORDER_COLUMNS,
            state_column="state",
            indexes=[["amount"], ["last_order_time"]],
        ),
        table_section(target, members, MEMBER_COLUMNS, state_column="state"),
    )
    import_file(REPO / "sample_events.jsonl")
    out = ok(["replay"])
    assert "member_orders: at seq" in out and "members: at seq" in out

    expected = assert_table_equals_query(target, orders, "member_orders", ORDER_COLUMNS, "state")
    assert {r["key"]: r["state"]["orders"] for r in expected} == {"u1": 3, "u2": 1, "u3": 1}
    got = assert_table_equals_query(target, members, "members", MEMBER_COLUMNS, "state")
    assert sorted(r["key"] for r in got) == ["u1", "u3"]  # u2 was deleted: its row too

    # incremental: new events after the checkpoint, a delete and an update included
    ok(["emit", "order.placed", "--data", '{"userid":"u3","orderAmt":12.5,"productId":"p-2"}'])
    ok(["emit", "member.deleted", "-f", "userid=u3"])
    ok(["emit", "member.updated", "--data", '{"userid":"u1","name":"Kim Min-ji"}'])
    ok(["replay"])
    assert target.checkpoint(orders) == last_seq()
    assert target.checkpoint(members) == last_seq()
    expected = assert_table_equals_query(target, orders, "member_orders", ORDER_COLUMNS, "state")
    assert [r["state"]["amount"] for r in expected if r["key"] == "u3"] == [332.5]
    got = assert_table_equals_query(target, members, "members", MEMBER_COLUMNS, "state")
    assert [r["key"] for r in got] == ["u1"]


def test_the_default_table_name_is_the_projection_name(each_backend: str, project: Path) -> None:
    """No ``name`` and no ``database``: a table ``member_orders`` in the evflow database (on
    PostgreSQL, in the schema that the evflow URL selects)."""
    write_rules(project, {"columns": ORDER_COLUMNS})
    import_file(REPO / "sample_events.jsonl")
    ok(["replay"])
    url = os.environ.get("EVFLOW_DB")
    if url is None:
        engine = sa.create_engine(f"sqlite:///{project / '.evflow' / 'evflow.db'}")
        t = Target("sqlite", project, None, engine)
    else:
        from tests.pg import base_url

        schema = url.rsplit("schema=", 1)[1]
        engine = sa.create_engine(
            base_url().replace("postgresql://", "postgresql+psycopg://", 1),
            connect_args={"options": f"-c search_path={schema}"},
        )
        t = Target("postgres", project, None, engine, schema=schema)
    try:
        assert "member_orders" in t.tables()
        assert_table_equals_query(t, "member_orders", "member_orders", ORDER_COLUMNS)
    finally:
        engine.dispose()


def test_a_separate_sqlite_file_named_through_an_environment_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_db = project / "read.db"
    monkeypatch.setenv("READ_DB", f"sqlite:///{read_db}")
    write_rules(
        project, {"name": "orders_read", "database": "${READ_DB}", "columns": ORDER_COLUMNS}
    )
    import_file(REPO / "sample_events.jsonl")
    ok(["replay"])
    engine = sa.create_engine(f"sqlite:///{read_db}")
    try:
        t = Target("sqlite", project, "${READ_DB}", engine)
        assert {"orders_read", "evflow_checkpoints"} <= t.tables()
        assert_table_equals_query(t, "orders_read", "member_orders", ORDER_COLUMNS)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_20000_generated_events_give_tables_equal_to_query(
    target: Target, generated: dict[int, Path]
) -> None:
    orders, members = target.name("member_orders"), target.name("members")
    write_rules(
        target.project,
        table_section(target, orders, ORDER_COLUMNS),
        table_section(target, members, MEMBER_COLUMNS, state_column="state"),
    )
    import_file(generated[20_000])
    ok(["replay"])
    expected = assert_table_equals_query(target, orders, "member_orders", ORDER_COLUMNS)
    assert len(expected) > 500
    assert_table_equals_query(target, members, "members", MEMBER_COLUMNS, "state")
    assert target.checkpoint(orders) == target.checkpoint(members) == last_seq()


# --------------------------------------------------------------------------------------------
# exactly once across SIGKILL (inc is not idempotent: a batch applied twice would show)


def _replay_process(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [evflow_exe(), "replay", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


class _WriteLock:
    """Holds a write lock on a target table from another connection (the replay must wait)."""

    def __init__(self, target: Target, table: str) -> None:
        self.target, self.table = target, table
        self.conn: Any = None

    def __enter__(self) -> _WriteLock:
        if self.target.kind == "sqlite":
            import sqlite3

            self.conn = sqlite3.connect(
                self.target.project / ".evflow" / "evflow.db", isolation_level=None
            )
            self.conn.execute("BEGIN IMMEDIATE")
        elif self.target.kind == "postgres":
            self.conn = self.target.engine.connect()
            self.conn.exec_driver_sql(f'LOCK TABLE "{self.table}" IN EXCLUSIVE MODE')
        else:
            self.conn = self.target.engine.connect()
            self.conn.exec_driver_sql(f"LOCK TABLES `{self.table}` WRITE")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.target.kind == "sqlite":
            self.conn.execute("ROLLBACK")
            self.conn.close()
        elif self.target.kind == "postgres":
            self.conn.rollback()
            self.conn.close()
        else:
            self.conn.exec_driver_sql("UNLOCK TABLES")
            self.conn.close()


@pytest.mark.slow
def test_sigkill_mid_replay_then_resume_gives_the_same_table(
    target: Target, generated: dict[int, Path]
) -> None:
    """Kill -9 a replay after its first batch committed, while the next one waits for the
    target: the table holds exactly the snapshot as of its own checkpoint; a resumed replay
    ends equal to ``query`` (no batch applied twice)."""
    orders = target.name("member_orders")
    write_rules(target.project, table_section(target, orders, ORDER_COLUMNS, state_column="s"))
    import_file(generated[20_000])
    import_file(generated[10_000])
    end = last_seq()

    proc = _replay_process(target.project)
    try:
        deadline = time.monotonic() + 90
        position = None
        while time.monotonic() < deadline and proc.poll() is None:
            position = target.checkpoint(orders)
            if position:
                break
            time.sleep(0.01)
        assert position, f"no batch committed: {proc.poll()} {proc.stderr and proc.stderr.read()}"
        with _WriteLock(target, orders):
            time.sleep(1.5)  # the replay folds its next batch, then waits for the lock
            assert proc.poll() is None, "the replay finished before the lock: use more events"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    position = target.checkpoint(orders)
    assert position is not None and 0 < position < end
    assert_table_matches(target, orders, query_rows("member_orders", as_of=position), ORDER_COLUMNS)

    ok(["replay"])
    assert target.checkpoint(orders) == end
    assert_table_equals_query(target, orders, "member_orders", ORDER_COLUMNS, "s")


@pytest.mark.slow
def test_sigkills_at_any_moment_leave_a_consistent_table(
    target: Target, generated: dict[int, Path]
) -> None:
    """Replays killed after various delays (start-up, mid-fold, mid-commit): after each kill
    the table equals the snapshot as of the table's own checkpoint; the last replay completes
    and the table equals ``query``."""
    orders = target.name("member_orders")
    write_rules(target.project, table_section(target, orders, ORDER_COLUMNS))
    import_file(generated[20_000])
    end = last_seq()
    for delay in (0.4, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0):
        proc = _replay_process(target.project)
        time.sleep(delay)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        position = target.checkpoint(orders)
        if position:
            expected = query_rows("member_orders", as_of=position)
            assert_table_matches(target, orders, expected, ORDER_COLUMNS)
        elif orders in target.tables():
            assert target.rows(orders)[1] == {}, "rows without their checkpoint"
    ok(["replay"])
    assert target.checkpoint(orders) == end
    assert_table_equals_query(target, orders, "member_orders", ORDER_COLUMNS)


# --------------------------------------------------------------------------------------------
# definition changes: built aside, swapped in; readers never see half a table


class _Reader(threading.Thread):
    """Reads the live table over and over: (column names, row count) per look."""

    def __init__(self, target: Target, table: str) -> None:
        super().__init__(daemon=True)
        self.target, self.table = target, table
        self.seen: list[tuple[tuple[str, ...], int] | None] = []
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        engine = self.target.engine
        while not self.stop.is_set():
            try:
                with engine.connect() as conn:
                    if self.target.kind == "sqlite":
                        cols = tuple(
                            r[1] for r in conn.exec_driver_sql(f'PRAGMA table_info("{self.table}")')
                        )
                        count = conn.exec_driver_sql(f'SELECT count(*) FROM "{self.table}"')
                    else:
                        q = "`" if self.target.kind == "mariadb" else '"'
                        result = conn.exec_driver_sql(f"SELECT * FROM {q}{self.table}{q} LIMIT 1")
                        cols = tuple(result.keys())
                        result.close()
                        count = conn.exec_driver_sql(f"SELECT count(*) FROM {q}{self.table}{q}")
                    self.seen.append((tuple(sorted(cols)), int(count.scalar_one())))
            except Exception as exc:  # a moment without the table is a failure too
                self.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            time.sleep(0.005)


@pytest.mark.slow
def test_a_definition_change_rebuilds_aside_and_swaps(
    target: Target, generated: dict[int, Path]
) -> None:
    orders = target.name("member_orders")
    first = {"orders": "integer", "amount": "numeric"}
    write_rules(target.project, table_section(target, orders, first))
    import_file(generated[20_000])
    ok(["replay"])
    old_rows = len(assert_table_equals_query(target, orders, "member_orders", first))
    before = target.tables() if target.kind != "mariadb" else None  # MariaDB's db is shared

    write_rules(target.project, table_section(target, orders, ORDER_COLUMNS, state_column="state"))
    reader = _Reader(target, orders)
    reader.start()
    try:
        r = run_cli(["replay"])
    finally:
        reader.stop.set()
        reader.join(10)
    assert r.exit_code == 0, r.stderr
    assert "member_orders" in r.stderr and "definition changed" in r.stderr

    assert_table_equals_query(target, orders, "member_orders", ORDER_COLUMNS, "state")
    assert target.checkpoint(orders) == last_seq()
    assert target.mine() == {orders}, "the old table is dropped, nothing is left aside"
    assert before is None or target.tables() == before
    assert not reader.errors, reader.errors[:3]
    old = tuple(sorted(["key", "seq", *first]))
    new = tuple(sorted(["key", "seq", *ORDER_COLUMNS, "state"]))
    assert reader.seen, "the reader never looked"
    for look in reader.seen:  # the old table whole, or the new one whole: never half
        assert look in ((old, old_rows), (new, old_rows)), look

    # --rebuild: the same rows again, also built aside
    r = run_cli(["replay", "--rebuild", "member_orders"])
    assert r.exit_code == 0, r.stderr
    assert_table_equals_query(target, orders, "member_orders", ORDER_COLUMNS, "state")
    assert target.mine() == {orders}


# --------------------------------------------------------------------------------------------
# errors


def test_a_value_that_does_not_fit_its_column_is_a_clean_error(target: Target) -> None:
    orders, members = target.name("member_orders"), target.name("members")
    write_rules(
        target.project,
        table_section(target, orders, ORDER_COLUMNS),
        table_section(target, members, MEMBER_COLUMNS),
    )
    import_file(REPO / "sample_events.jsonl")
    ok(["replay"])
    before_table = target.rows(orders)[1]
    before_query = query_rows("member_orders")

    ok(["emit", "order.placed", "--data", '{"userid":"u1","orderAmt":5,"productId":{"sku":1}}'])
    bad = last_seq()
    ok(["emit", "member.created", "--data", '{"userid":"u7","name":"New","email":"n@x"}'])
    r = run_cli(["replay"])
    assert r.exit_code == 1, (r.stdout, r.stderr)
    line = r.stderr.splitlines()[0]
    for part in ("member_orders", f"seq {bad}", "last_product", "text"):
        assert part in line, line
    assert "Traceback" not in r.stderr
    assert target.rows(orders)[1] == before_table  # the table stays as it was
    assert target.checkpoint(orders) == bad - 1
    q = run_cli(["query", "member_orders", "--format", "json"])  # the snapshot too
    assert json.loads(q.stdout) == before_query and "behind the log" in q.stderr
    # the other projection went on
    assert "members: at seq" in r.stdout
    assert "u7" in target.rows(members)[1]


#: values of the right type that a server cannot hold: (server, event data field, value, why)
BEYOND_THE_SERVER = [
    ("postgres", "productId", "a\x00b", "NUL"),  # PostgreSQL's TEXT and JSONB hold no NUL
    ("mariadb", "productId", "x" * 70_000, "65535 bytes"),  # a MariaDB TEXT holds 64 KiB
    ("mariadb", "orderAmt", 10**40, "DECIMAL(65,30)"),  # 35 digits before the point
]


@pytest.mark.parametrize(
    ("target", "field_name", "value", "why"),
    [case for case in BEYOND_THE_SERVER if case[0] in TARGETS],
    indirect=["target"],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "",
)
def test_a_value_the_server_cannot_hold_is_a_clean_error_too(
    target: Target, field_name: str, value: Any, why: str
) -> None:
    """Caught with the type checks when the event is folded: the snapshot and the table stay as
    they were (else the snapshot moved on and every later replay failed on the table's write)."""
    orders = target.name("member_orders")
    write_rules(target.project, table_section(target, orders, ORDER_COLUMNS, state_column="s"))
    import_file(REPO / "sample_events.jsonl")
    ok(["replay"])
    before_table = target.rows(orders)[1]
    before_query = query_rows("member_orders")

    data = {"userid": "u1", "orderAmt": 5, "productId": "p-1", field_name: value}
    ok(["emit", "order.placed", "--data", json.dumps(data)])
    bad = last_seq()
    r = run_cli(["replay"])
    assert r.exit_code == 1, (r.stdout, r.stderr)
    line = r.stderr.splitlines()[0]
    column = "last_product" if field_name == "productId" else "amount"
    for part in ("member_orders", f"seq {bad}", column, why):
        assert part in line, line
    assert "Traceback" not in r.stderr
    assert target.rows(orders)[1] == before_table
    assert target.checkpoint(orders) == bad - 1
    q = run_cli(["query", "member_orders", "--format", "json"])
    assert json.loads(q.stdout) == before_query and "behind the log" in q.stderr


def test_unreachable_target_is_exit_4_with_the_password_masked(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's database is down: exit 4 and one line naming the projection, without the
    password; the log, the JSON snapshot and the other projections go on; once the database
    is back, the table catches up."""
    orders = target.name("member_orders")
    write_rules(target.project, table_section(target, orders, ORDER_COLUMNS, state_column="s"))
    import_file(REPO / "sample_events.jsonl")
    if target.kind == "sqlite":
        write_rules(
            target.project,
            table_section(target, orders, ORDER_COLUMNS, state_column="s", database="${READ_DB}"),
        )
        monkeypatch.setenv("READ_DB", f"sqlite:///{target.project}/missing/dir/read.db")
        secret = None
    else:
        secret = "s3cret-Pw"
        scheme = "postgresql" if target.kind == "postgres" else "mysql"
        monkeypatch.setenv("READ_DB", f"{scheme}://evflow:{secret}@127.0.0.1:1/test")
    r = run_cli(["replay"])
    assert r.exit_code == 4, (r.stdout, r.stderr)
    assert "member_orders" in r.stderr and "Traceback" not in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("evflow: error")]) == 1
    if secret is not None:
        assert secret not in r.stderr + r.stdout and "***" in r.stderr
    assert "members: at seq" in r.stdout  # the other projection went on
    stats = json.loads(ok(["stats", "--format", "json"]))
    assert stats["projections"]["member_orders"]["position"] == stats["last_seq"]  # the JSON too
    ok(["emit", "order.placed", "--data", '{"userid":"u1","orderAmt":1,"productId":"p-0"}'])
    q = run_cli(["query", "member_orders", "--format", "json"])  # the JSON snapshot still reads
    assert q.exit_code == 0 and "member_orders" in q.stderr, q.stderr
    assert [r["state"]["orders"] for r in json.loads(q.stdout) if r["key"] == "u1"] == [4]
    if secret is not None:
        assert secret not in q.stderr

    back = target.url or f"sqlite:///{target.project}/.evflow/evflow.db"
    monkeypatch.setenv("READ_DB", back)  # the database is back (the same definition)
    ok(["replay"])
    assert_table_equals_query(target, orders, "member_orders", ORDER_COLUMNS, "s")


def test_an_unset_environment_variable_names_itself(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_READ_DB", raising=False)
    write_rules(project, {"database": "${NO_SUCH_READ_DB}", "columns": ORDER_COLUMNS})
    import_file(REPO / "sample_events.jsonl")
    r = run_cli(["replay"])
    assert r.exit_code != 0 and "NO_SUCH_READ_DB" in r.stderr and "Traceback" not in r.stderr
    assert "members: at seq" in r.stdout


# --------------------------------------------------------------------------------------------
# query --sql


def test_query_sql_reads_the_table_read_only(target: Target) -> None:
    orders = target.name("member_orders")
    write_rules(target.project, table_section(target, orders, ORDER_COLUMNS))
    import_file(REPO / "sample_events.jsonl")
    ok(["replay"])
    q = "`" if target.kind == "mariadb" else '"'
    sql = f"SELECT key, orders, amount FROM {orders} WHERE orders > 1 ORDER BY amount DESC"
    if target.kind == "mariadb":
        sql = sql.replace("SELECT key", "SELECT `key`")
    rows = json.loads(ok(["query", "member_orders", "--sql", sql, "--format", "json"]))
    assert [(r["key"], r["orders"], float(r["amount"])) for r in rows] == [("u1", 3, 245.0)]
    csv = ok(["query", "member_orders", "--sql", sql, "--format", "csv"])
    assert csv.splitlines()[0] == "key,orders,amount" and csv.splitlines()[1].startswith("u1,3,")
    lines = ok(["query", "member_orders", "--sql", sql, "--format", "jsonl"]).splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["key"] == "u1"

    before = target.rows(orders)[1]
    for statement in (
        f"DELETE FROM {q}{orders}{q}",
        f"UPDATE {q}{orders}{q} SET orders = 0",
        f"DROP TABLE {q}{orders}{q}",
        f"SELECT 1; DELETE FROM {q}{orders}{q}",
    ):
        r = run_cli(["query", "member_orders", "--sql", statement])
        assert r.exit_code != 0, statement
        assert "Traceback" not in r.stderr and r.stderr.startswith("evflow: error"), r.stderr
    if target.kind == "postgres":  # a write hidden in a CTE meets the read-only transaction
        r = run_cli(
            ["query", "member_orders", "--sql",
             f'WITH d AS (DELETE FROM "{orders}" RETURNING 1) SELECT count(*) FROM d']
        )
        assert r.exit_code != 0
    assert target.rows(orders)[1] == before
    assert target.tables() >= {orders}


def test_a_mariadb_swap_cut_short_after_its_rename_is_completed(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MariaDB commits DDL by itself: a crash after the RENAME TABLE of a swap and before the
    checkpoint's move leaves the new table live, the old one renamed and two checkpoint rows.
    The next replay completes the swap (and drops the old table)."""
    engine = sa.create_engine(MYSQL_URL)
    monkeypatch.setenv("READ_DB", MYSQL_URL)
    t = Target("mariadb", project, "${READ_DB}", engine, url=MYSQL_URL)
    orders = t.name("member_orders")
    try:
        write_rules(project, table_section(t, orders, ORDER_COLUMNS))
        import_file(REPO / "sample_events.jsonl")
        ok(["replay"])
        aside, old = f"{orders}__evflow_new", f"{orders}__evflow_old"
        with engine.begin() as conn:  # what a swap had done when the crash came
            conn.exec_driver_sql(f"CREATE TABLE `{aside}` LIKE `{orders}`")
            conn.exec_driver_sql(f"INSERT INTO `{aside}` SELECT * FROM `{orders}`")
            conn.exec_driver_sql(
                "INSERT INTO evflow_checkpoints (table_name, projection, position, definition,"
                " updated_at) SELECT %s, projection, position, definition, updated_at"
                " FROM evflow_checkpoints WHERE table_name = %s",
                (aside, orders),
            )
            conn.exec_driver_sql(f"RENAME TABLE `{orders}` TO `{old}`, `{aside}` TO `{orders}`")
        ok(["emit", "order.placed", "--data", '{"userid":"u2","orderAmt":7,"productId":"p-1"}'])
        ok(["replay"])
        assert t.mine() == {orders}
        assert t.checkpoint(orders) == last_seq() and t.checkpoint(aside) is None
        assert_table_equals_query(t, orders, "member_orders", ORDER_COLUMNS)
    finally:
        _drop_mysql(engine, t.names)
        engine.dispose()
