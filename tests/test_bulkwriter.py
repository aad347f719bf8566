"""A large import on SQLite is written by a child process while the importing one routes it
(evflow.store.bulkwriter, issue 16): it must record exactly what one process records, roll a
chunk back when the child fails, and leave no lock behind when either side goes away."""

from __future__ import annotations

import contextlib
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

    def spy(*a: object, **k: bool) -> object:
        writer = real(*a, **k)  # type: ignore[arg-type]
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


@pytest.mark.parametrize("refused", [2999, 3999], ids=["a middle chunk", "the last chunk"])
def test_the_childs_failure_rolls_its_chunk_back(
    project: Path, monkeypatch: pytest.MonkeyPatch, refused: int
) -> None:
    """A row the child cannot write (here a trigger refuses one event) fails the chunk at its
    commit: the chunks before it stay recorded, nothing of it does, and the error is the
    database's (exit 4). The importer learns of it as it starts the next chunk (it prepares
    that chunk while the child commits), or before it ends, for the last."""
    monkeypatch.setattr(log_cmds, "IMPORT_CHUNK", 1_000)
    monkeypatch.setattr(importing, "PIPED_MIN", 0)
    _project(project)
    from evflow.store.sqlite import SqliteStore

    SqliteStore(str(project / "log.db")).close()  # the schema
    with sqlite3.connect(project / "log.db") as con:
        con.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.id = 'o{refused}'"
            " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )
    (project / "in.jsonl").write_text("".join(json.dumps(_order(i)) + "\n" for i in range(4_000)))
    r = run_cli(["--db", "log.db", "import", "in.jsonl", "--no-dispatch"])
    assert r.exit_code == 4, r.stderr
    assert "refused by a trigger" in r.stderr
    with sqlite3.connect(project / "log.db") as con:
        ids = {i for (i,) in con.execute("SELECT id FROM events WHERE source = 'shop'")}
    assert ids == {f"o{i}" for i in range(refused // 1_000 * 1_000)}  # the chunks before it


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


PARENT = """
import os, sys, time
from evflow.store.bulkwriter import BulkWriter
from evflow.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
writer = BulkWriter(store)
print(writer.proc.pid, flush=True)
if sys.argv[2] == "in-chunk":
    chunk = writer.write()  # kept: a context manager collected unexited would end the child
    tx = chunk.__enter__()
    tx.append({"specversion": "1.0", "id": "a", "source": "s", "type": "t",
               "time": "2016-10-02T00:00:00.000000Z", "data": {}})
    tx.flush()
    writer.ask(("hello",))  # the rows are written: the child holds the lock and a transaction
else:
    writer.send(("begin",))  # the child waits for the lock the test holds
print("ready", flush=True)
time.sleep(0.5)
os._exit(0)  # as if killed: no clean-up of any kind
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("moment", ["in-chunk", "waiting-for-the-lock"])
def test_a_child_whose_importer_died_ends_and_leaves_the_lock_free(
    tmp_path: Path, moment: str
) -> None:
    """The importing process dies without a word, while its child holds a chunk's transaction
    or while the child waits for the write lock: the child ends with it (its transaction rolled
    back), and another writer gets the lock at once."""
    import subprocess
    import sys
    import time

    from evflow.store.sqlite import SqliteStore

    path = str(tmp_path / "log.db")
    holder = SqliteStore(path)
    blocker = holder.write() if moment != "in-chunk" else None
    if blocker is not None:
        blocker.__enter__()  # the test holds the write lock
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, path, moment], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "ready"
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)  # ended with its parent, even while waiting for the lock
    finally:
        if blocker is not None:
            blocker.__exit__(None, None, None)
        holder.close()
    other = SqliteStore(path)
    try:
        started = time.monotonic()
        with other.write() as tx:
            tx.append({"specversion": "1.0", "id": "b", "source": "s", "type": "t",
                       "time": "2016-10-02T00:00:00.000000Z", "data": {}})  # fmt: skip
        assert time.monotonic() - started < 5
        assert [r[0] for r in other.execute("SELECT id FROM events").fetchall()] == ["b"]
    finally:
        other.close()


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
                with sqlite3.connect(db) as con, contextlib.suppress(sqlite3.OperationalError):
                    # (no such table: the import is creating the schema)
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
    assert not _writers_of(db)  # the writing process (a process group of its own) ended too
    assert "Traceback" not in err


def _writers_of(db: Path) -> list[str]:
    """Writing processes of imports into ``db`` still running."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if str(db).encode() in words and any(b"importchild" in w for w in words):
            found.append(cmdline.parent.name)
    return found


def test_ctrl_c_while_the_writer_waits_for_the_lock_stops_at_once(project: Path) -> None:
    """Another writer holds the lock for long: Ctrl-C stops the import without waiting for
    the lock (the writing process is ended, not asked)."""
    import os
    import signal
    import subprocess
    import time

    from evflow.store.sqlite import SqliteStore
    from tests.conftest import evflow_exe

    (project / "in.jsonl").write_text("".join(json.dumps(_order(i)) + "\n" for i in range(8_000)))
    db = project / "log.db"
    holder = SqliteStore(str(db))
    try:
        with holder.write():
            proc = subprocess.Popen(
                [evflow_exe(), "--db", str(db), "import", "in.jsonl", "--no-dispatch"],
                cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                start_new_session=True,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while not holder.writers_waiting() and time.monotonic() < deadline:
                time.sleep(0.05)  # the check is done: the writing process waits for the lock
            assert holder.writers_waiting()
            started = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert time.monotonic() - started < 10
        assert proc.returncode == 130, err
        assert "nothing recorded" in err and "Traceback" not in err
        assert not _writers_of(db)
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("bad", "first"),
    [((7_000, 9_000), 7_000), ((9_000, 11_000), 9_000), ((3_000, 7_000), 3_000)],
    ids=["writer's-block-first", "this-process's-block-first", "before-the-writer-starts"],
)
def test_the_checking_pass_shared_with_the_writer_names_the_first_bad_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, bad: tuple[int, int], first: int
) -> None:
    """From PIPED_MIN lines on, the writing process checks blocks of 2,000 lines, here every
    other one: whichever process finds a bad line, the first one in the file is reported, and
    nothing is recorded."""
    monkeypatch.setattr(importing, "PIPED_MIN", 5_000)
    lines = [json.dumps(_order(i)) for i in range(14_000)]
    for number in bad:
        lines[number - 1] = '{"type": "order.placed", "time": "yesterday"}'
    (project / "in.jsonl").write_text("\n".join(lines) + "\n")
    started: list[object] = []
    real = importing._writer

    def spy(*args: object, **k: bool) -> object:
        started.append(real(*args, **k))  # type: ignore[arg-type]
        return started[-1]

    # once up, the writing process checks every other block (lines 6,001-8,000, 10,001-12,000)
    monkeypatch.setattr(importing, "_give", lambda writer, index, given: index % 2 == 1)

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


def test_the_writing_process_runs_no_code_from_the_current_folder(project: Path) -> None:
    """A json.py (or any module a process imports) in the folder the import runs in is not
    run by the writing process, which starts isolated and takes the importer's own path."""
    from tests.conftest import run_process

    _project(project)
    (project / "json.py").write_text('open("RAN", "w").write("ran")\n')
    (project / "in.jsonl").write_text("".join(json.dumps(_order(i)) + "\n" for i in range(6_000)))
    r = run_process(["--db", "log.db", "import", "in.jsonl", "--no-dispatch"], cwd=project)
    assert r.returncode == 0, r.stderr
    assert not (project / "RAN").exists()
    assert "recorded 6000 event(s)" in r.stdout


def test_a_writing_process_that_cannot_start_leaves_the_import_to_one_process(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evflow.store import bulkwriter

    monkeypatch.setattr(importing, "PIPED_MIN", 0)
    monkeypatch.setattr(bulkwriter.sys, "executable", str(project / "no-python"))
    _project(project)
    (project / "in.jsonl").write_text("".join(json.dumps(_order(i)) + "\n" for i in range(100)))
    r = run_cli(["--db", "log.db", "import", "in.jsonl", "--no-dispatch", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["recorded"] == 100


def test_a_writing_process_that_dies_mid_chunk_is_a_storage_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 4 and the writer named, whatever the importer was doing when it found out (not a
    line's problem: no FILE:LINE before it)."""
    from evflow.store import bulkwriter

    monkeypatch.setattr(importing, "PIPED_MIN", 0)
    monkeypatch.setattr(log_cmds, "IMPORT_CHUNK", 3_000)
    real = bulkwriter.PipedTransaction.flush
    flushes = [0]

    def flush(self: bulkwriter.PipedTransaction) -> None:
        flushes[0] += 1
        if flushes[0] == 4:  # in the first chunk, rows already sent
            self.store.writer.proc.kill()
            self.store.writer.proc.wait()
        real(self)

    monkeypatch.setattr(bulkwriter.PipedTransaction, "flush", flush)
    _project(project)
    (project / "in.jsonl").write_text("".join(json.dumps(_order(i)) + "\n" for i in range(6_000)))
    r = run_cli(["--db", "log.db", "import", "in.jsonl", "--no-dispatch"])
    assert r.exit_code == 4, r.stderr
    assert r.stderr.startswith("evflow: error: the import's writing process stopped"), r.stderr


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs named pipes")
def test_an_input_that_cannot_be_read_twice_is_spooled(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`evflow import <(cat big.jsonl)`: a pipe read a second time is empty, so it is kept in
    a temporary file like stdin; here the checked events are too many to keep, and the writing
    pass reads the input again."""
    import os
    import threading

    monkeypatch.setattr(importing, "KEEP_CHECKED", 1_000)
    fifo = project / "in.fifo"
    os.mkfifo(fifo)
    text = "".join(json.dumps(_order(i)) + "\n" for i in range(7_000))
    feeder = threading.Thread(target=fifo.write_text, args=(text,))
    feeder.start()
    try:
        r = run_cli(["--db", "log.db", "import", str(fifo), "--format", "json"])
    finally:
        feeder.join(30)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["recorded"] == 7_000


class _Writer:
    """What _give asks of a writing process: whether it is up, and how many blocks it did."""

    def __init__(self, up: bool | Exception, done: int) -> None:
        self.up, self.done = up, done

    def started(self, wait: bool = True) -> bool:
        if isinstance(self.up, Exception):
            raise self.up
        return self.up

    def poll(self) -> int:
        return self.done


def test_the_writing_process_is_given_blocks_once_up_while_it_keeps_up() -> None:
    from evflow.errors import StorageUnavailable

    assert not importing._give(_Writer(False, 0), 3, 0)  # still starting
    assert importing._give(_Writer(True, 0), 3, 0)
    assert importing._give(_Writer(True, 3), 9, 4)  # one block left to check: one more
    assert not importing._give(_Writer(True, 2), 9, 4)  # AHEAD (2) left: this one checks
    assert not importing._give(_Writer(StorageUnavailable("cannot open"), 0), 3, 0)


def test_a_slower_importer_leaves_more_blocks_to_the_writing_process(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocks are shared by speed, not by turns: when this process checks slowly, the
    writing process checks most of them, and the log is the same."""
    import time

    monkeypatch.setattr(importing, "PIPED_MIN", 1_000)
    monkeypatch.setattr(importing, "BLOCK", 500)
    real_check, real_give = importing.check_lines, importing._give
    given: list[bool] = []

    def slow_check(*args: object) -> object:
        time.sleep(0.15)
        return real_check(*args)  # type: ignore[arg-type]

    def give(*args: object) -> bool:
        given.append(real_give(*args))  # type: ignore[arg-type]
        return given[-1]

    monkeypatch.setattr(importing, "check_lines", slow_check)
    monkeypatch.setattr(importing, "_give", give)
    _project(project)
    (project / "in.jsonl").write_text("".join(json.dumps(_order(i)) + "\n" for i in range(12_000)))
    r = run_cli(["--db", "log.db", "import", "in.jsonl", "--no-dispatch", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["recorded"] == 12_000
    assert given.count(True) > given.count(False) > 0, given
    with sqlite3.connect(project / "log.db") as con:
        rows = con.execute("SELECT id FROM events WHERE source = 'shop' ORDER BY seq")
        assert [i for (i,) in rows] == [f"o{i}" for i in range(12_000)]
