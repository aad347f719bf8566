"""A large import on SQLite is written by a child process while the importing one routes it
(evflow.store.bulkwriter, issue 16): it must record exactly what one process records, roll a
chunk back when the child fails, and leave no lock behind when either side goes away."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from evflow.cli import log_cmds
from evflow.services import importing
from tests.conftest import run_cli

RULES = """\
version: 1
rules:
  - name: ship
    on: order.placed
    then:
      - emit: shipment.requested
        subject: ${{ data.orderId }}
        data: {orderId: "${{ data.orderId }}"}
  - name: big
    on: order.placed
    if: data.amount > 100
    then:
      - emit: sales.notified
        data: {amount: "${{ data.amount }}"}
      - run: ["true"]
  - name: broken
    on: order.placed
    if: data.n % 7 == 0
    then:
      - emit: broken.x
        data: {x: "${{ data.nothere.deeper }}"}
  - name: chain
    on: shipment.requested
    then:
      - emit: shipment.chained
        data: {o: "${{ data.orderId }}"}
"""


TIME = "2016-10-02T00:00:00Z"


def _order(i: int) -> dict:
    # every 50th amount is text: the filter `data.amount > 100` fails on it (a rule error)
    amount: object = f"{i}" if i % 50 == 0 else i % 300
    data = {"orderId": f"o{i}", "amount": amount, "n": i}
    return {"type": "order.placed", "source": "shop", "id": f"o{i}", "time": TIME, "data": data}


def _project(root: Path) -> None:
    (root / "rules").mkdir()
    (root / "rules" / "shop.yaml").write_text(RULES)


def _tables(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as con:
        return {
            "events": con.execute(
                "SELECT seq, id, source, type, subject, time, causationid, correlationid, rule,"
                " json_remove(body, '$.recordedtime') FROM events ORDER BY seq"
            ).fetchall(),
            "deliveries": con.execute(
                "SELECT id, event_seq, event_id, rule, action, kind, status, attempts, last_error"
                " FROM deliveries ORDER BY id"
            ).fetchall(),
            "rule_errors": con.execute("SELECT * FROM rule_errors ORDER BY 1, 2").fetchall(),
            "sequence": con.execute("SELECT * FROM sqlite_sequence ORDER BY 1").fetchall(),
        }


def _import(root: Path, piped: bool, monkeypatch: pytest.MonkeyPatch, *args: str) -> dict:
    monkeypatch.setattr(importing, "PIPED_MIN", 0 if piped else 10**12)
    used: list[bool] = []
    real = importing._writer

    def spy(*a: object) -> object:
        writer = real(*a)  # type: ignore[arg-type]
        used.append(writer is not None)
        return writer

    monkeypatch.setattr(importing, "_writer", spy)
    db = str(root / "log.db")
    r = run_cli(["--db", db, "import", *args, "--no-dispatch", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert used == [piped]
    return dict(json.loads(r.stdout))


@pytest.mark.parametrize("piped", [True, False])
def test_a_piped_import_records_what_one_process_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piped: bool
) -> None:
    """Derived events (a chain of two), deliveries, rule errors and dead emit deliveries, a line
    already in the log, a line repeated far from its first (past a batch of rows written), in
    chunks of 2,000: the same rows as the other way, row for row."""
    monkeypatch.setattr(log_cmds, "IMPORT_CHUNK", 2_000)
    results = {}
    for way in (piped, not piped):
        root = tmp_path / f"piped-{way}"
        root.mkdir()
        _project(root)
        monkeypatch.chdir(root)
        data = json.dumps(_order(3)["data"])
        emit = ["emit", "order.placed", "--source", "shop", "--id", "o3", "--time", TIME]
        assert run_cli(["--db", "log.db", *emit, "--data", data]).exit_code == 0
        lines = [_order(i) for i in range(6_000)] + [_order(10), _order(5_999)]
        (root / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        summary = _import(root, way, monkeypatch, "in.jsonl")
        assert (summary["recorded"], summary["duplicates"]) == (5_999, 3)
        again = _import(root, way, monkeypatch, "in.jsonl")
        assert (again["recorded"], again["duplicates"]) == (0, 6_002)
        results[way] = _tables(root / "log.db")
    assert results[True] == results[False]
    t = results[True]
    big = sum(1 for i in range(6_000) if i % 50 and i % 300 > 100)  # sales.notified
    assert len(t["events"]) == 6_000 * 3 + big  # each order: itself, ship, chain (o3 emitted)
    assert any(r[1] == "broken" for r in t["rule_errors"])  # a failed emit ...
    assert any(d[5] == "emit" and d[6] == "dead" for d in t["deliveries"])  # ... kept as dead
    assert any("filter" in r[2] or "no such" in r[2] or "compare" in r[2] for r in t["rule_errors"])


def test_the_childs_failure_rolls_its_chunk_back(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row the child cannot write (here a trigger refuses the 3,000th event) fails the chunk at
    its commit: the chunks before it stay recorded, nothing of it does, and the error is the
    database's (exit 4)."""
    monkeypatch.setattr(log_cmds, "IMPORT_CHUNK", 1_000)
    monkeypatch.setattr(importing, "PIPED_MIN", 0)
    _project(project)
    from evflow.store.sqlite import SqliteStore

    SqliteStore(str(project / "log.db")).close()  # the schema
    with sqlite3.connect(project / "log.db") as con:
        con.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.id = 'o2999'"
            " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )
    (project / "in.jsonl").write_text("".join(json.dumps(_order(i)) + "\n" for i in range(4_000)))
    r = run_cli(["--db", "log.db", "import", "in.jsonl", "--no-dispatch"])
    assert r.exit_code == 4, r.stderr
    assert "refused by a trigger" in r.stderr
    with sqlite3.connect(project / "log.db") as con:
        ids = {i for (i,) in con.execute("SELECT id FROM events WHERE source = 'shop'")}
    assert ids == {f"o{i}" for i in range(2_000)}  # the first two chunks, not the third


def test_a_writer_whose_child_died_says_so(tmp_path: Path) -> None:
    from evflow.errors import StorageUnavailable
    from evflow.store.bulkwriter import BulkWriter
    from evflow.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "log.db"))
    writer = BulkWriter(store)
    try:
        writer.proc.kill()
        writer.proc.wait()
        with pytest.raises(StorageUnavailable, match="writing process stopped"), writer.write():
            pass
    finally:
        writer.close()
        store.close()


def test_a_child_whose_importer_went_away_rolls_back_and_frees_the_lock(tmp_path: Path) -> None:
    """The importing process dies mid-chunk (here: its end of the pipe is closed): the child
    rolls back and ends, and another writer gets the lock at once."""
    from evflow.store.bulkwriter import BulkWriter
    from evflow.store.sqlite import SqliteStore

    path = str(tmp_path / "log.db")
    store = SqliteStore(path)
    writer = BulkWriter(store)
    event = {"specversion": "1.0", "id": "a", "source": "s", "type": "t",
             "time": "2016-10-02T00:00:00.000000Z", "data": {}}  # fmt: skip
    with pytest.raises(RuntimeError), writer.write() as tx:
        tx.append(dict(event))
        tx.flush()
        writer._to.close()  # as if this process had been killed
        raise RuntimeError("gone")
    assert writer.proc.wait(timeout=30) == 0
    other = SqliteStore(path)
    try:
        with other.write() as tx:  # would wait (and fail after the busy timeout) if still held
            tx.append(dict(event, id="b"))
        assert [r[0] for r in other.execute("SELECT id FROM events").fetchall()] == ["b"]
    finally:
        other.close()
        writer.close()
        store.close()


def test_imports_that_need_more_than_appends_use_one_process(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evflow.rulefiles.loader import load_rules
    from evflow.store.sqlite import SqliteStore

    _project(project)
    store = SqliteStore(str(project / "log.db"))
    try:
        ruleset = load_rules(project / "rules")
        big: list = [("x", "{}", None)] * importing.PIPED_MIN
        assert importing._writer(store, ruleset, True, big) is None  # --skip-invalid: savepoints
        assert importing._writer(store, ruleset, False, big[:-1]) is None  # small
        writer = importing._writer(store, ruleset, False, big)
        assert writer is not None
        writer.close()
        timed = RULES + "  - name: later\n    on: order.placed\n    then:\n" \
            "      - emit: reminder\n        after: 1d\n"  # fmt: skip
        (project / "rules" / "shop.yaml").write_text(timed)
        assert importing._writer(store, load_rules(project / "rules"), False, big) is None
    finally:
        store.close()


@pytest.mark.parametrize("piped", [True, False])
def test_a_rerouted_export_whose_derived_event_follows_its_cause_records_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piped: bool
) -> None:
    """An export holds an order and the event a rule derived from it; imported with --reroute,
    the order derives it again, and its own line, 500 lines later (the same batch of lookups,
    with rows written in between), is a duplicate, not a second row."""
    monkeypatch.chdir(tmp_path)
    _project(tmp_path)
    assert run_cli(["--db", "a.db", "emit", "order.placed", "--source", "shop", "--id", "c",
                    "--data", '{"orderId": "c", "amount": 1, "n": 1}']).exit_code == 0  # fmt: skip
    exported = run_cli(["--db", "a.db", "log", "--format", "jsonl"]).stdout.splitlines()
    cause, derived = exported[0], exported[1]
    assert json.loads(derived)["type"] == "shipment.requested"
    middle = [json.dumps(_order(i)) for i in range(100, 598)]
    (tmp_path / "in.jsonl").write_text("\n".join([cause, *middle, derived]) + "\n")
    summary = _import(tmp_path, piped, monkeypatch, "in.jsonl", "--reroute")
    assert (summary["recorded"], summary["duplicates"]) == (499, 1)


def test_an_interrupted_piped_import_says_what_it_recorded_and_leaves_no_writer(
    project: Path,
) -> None:
    """Ctrl-C reaches both processes: the child ignores it, the importing process stops, the
    chunk in progress is rolled back, and what it reports is what the log holds."""
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import evflow_exe, run_process

    _project(project)
    (project / "in.jsonl").write_text("".join(json.dumps(_order(i)) + "\n" for i in range(60_000)))
    db = project / "log.db"
    proc = subprocess.Popen(
        [evflow_exe(), "--db", str(db), "import", "in.jsonl", "--no-dispatch"],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                with sqlite3.connect(db) as con:
                    if con.execute("SELECT count(*) FROM events").fetchone()[0]:
                        break  # the first chunk is committed
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    with sqlite3.connect(db) as con:
        count = con.execute("SELECT count(*) FROM events WHERE source = 'shop'").fetchone()[0]
        last = con.execute("SELECT max(seq) FROM events").fetchone()[0]
    assert f"events recorded (seq 1 to {last})" in err
    assert count % 10_000 == 0 and 0 < count < 60_000  # whole chunks only
    started = time.monotonic()
    emit = run_process(["--db", str(db), "emit", "t.after", "--data", "{}"], cwd=project)
    assert emit.returncode == 0 and time.monotonic() - started < 30, emit.stderr
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the import's process group is left


@pytest.mark.parametrize(
    ("bad", "first"),
    [((7_000, 9_000), 7_000), ((9_000, 11_000), 9_000), ((3_000, 7_000), 3_000)],
    ids=["writer's-block-first", "this-process's-block-first", "before-the-writer-starts"],
)
def test_the_checking_pass_shared_with_the_writer_names_the_first_bad_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, bad: tuple[int, int], first: int
) -> None:
    """From PIPED_MIN lines on, the writing process checks every other block of 2,000 lines
    (lines 6,001-8,000, 10,001-12,000...): whichever process finds a bad line, the first one in
    the file is reported, and nothing is recorded."""
    monkeypatch.setattr(importing, "PIPED_MIN", 5_000)
    lines = [json.dumps(_order(i)) for i in range(14_000)]
    for number in bad:
        lines[number - 1] = '{"type": "order.placed", "time": "yesterday"}'
    (project / "in.jsonl").write_text("\n".join(lines) + "\n")
    started: list[object] = []
    real = importing._writer

    def spy(*args: object) -> object:
        started.append(real(*args))  # type: ignore[arg-type]
        return started[-1]

    monkeypatch.setattr(importing, "_writer", spy)
    r = run_cli(["--db", "log.db", "import", "in.jsonl"])
    assert r.exit_code == 2, r.stderr
    # the writing process started (and checked its blocks) unless the bad line came first
    assert bool(started and started[0] is not None) == (first > 6_000)
    assert f"in.jsonl:{first}: time: not an RFC 3339 time" in r.stderr
    assert not (project / "log.db").exists() or not sqlite3.connect(project / "log.db").execute(
        "SELECT count(*) FROM events"
    ).fetchone()[0]


@pytest.mark.parametrize("keep", [10**9, 1_000])
def test_a_shared_checking_pass_on_stdin_keeps_what_it_checked_or_reads_again(
    project: Path, monkeypatch: pytest.MonkeyPatch, keep: int
) -> None:
    """stdin is spooled and split the same way; when this process's share of what it may keep
    is exceeded, the writing pass reads the input again: the same log either way."""
    monkeypatch.setattr(importing, "KEEP_CHECKED", keep)
    _project(project)
    lines = [json.dumps(_order(i)) for i in range(9_000)] + ["[" + json.dumps(_order(9_000)) + "]"]
    r = run_cli(["--db", "log.db", "import", "-", "--format", "json"], stdin="\n".join(lines))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["recorded"] == 9_001
    with sqlite3.connect(project / "log.db") as con:
        rows = con.execute("SELECT id FROM events WHERE source = 'shop' ORDER BY seq")
        ids = [i for (i,) in rows]
    assert ids == [f"o{i}" for i in range(9_001)]
