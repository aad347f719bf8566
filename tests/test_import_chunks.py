"""`import` of a long file (issue 16): the input is checked whole before anything is written, so a
bad line anywhere still records nothing, whether the events are written in one transaction
(`--atomic`) or in chunks that let other writers in between; re-running an import that stopped
part way completes it (known ids are skipped)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import evflow_exe, run_cli, run_process

N = 12_000  # more than one chunk


def _lines(n: int, start: int = 0) -> list[str]:
    return [
        json.dumps({"type": "t.x", "source": "bench", "id": f"e{i}", "data": {"i": i}})
        for i in range(start, start + n)
    ]


def _count() -> int:
    return int(json.loads(run_cli(["stats", "--format", "json"]).stdout)["events"])


@pytest.mark.parametrize("atomic", [False, True])
def test_a_bad_line_past_the_first_chunk_records_nothing(project: Path, atomic: bool) -> None:
    f = project / "in.jsonl"
    f.write_text("\n".join([*_lines(N), '{"type": "t.x", "time": "2016-10-02"}']) + "\n")
    r = run_cli(["import", str(f), *(["--atomic"] if atomic else [])])
    assert r.exit_code == 2  # bad input (issue 13)
    assert f"in.jsonl:{N + 1}:" in r.stderr
    assert _count() == 0


def test_a_bad_line_on_stdin_past_the_first_chunk_records_nothing(project: Path) -> None:
    r = run_cli(["import", "-"], stdin="\n".join([*_lines(N), "not json"]) + "\n")
    assert r.exit_code == 2 and f"{N + 1}:" in r.stderr
    assert _count() == 0


@pytest.mark.parametrize("atomic", [False, True])
def test_a_long_import_records_every_event_once_in_file_order(project: Path, atomic: bool) -> None:
    f = project / "in.jsonl"
    f.write_text("\n".join(_lines(N)) + "\n")
    r = run_cli(["import", str(f), "--format", "json", *(["--atomic"] if atomic else [])])
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["recorded"], summary["duplicates"], summary["last_seq"]) == (N, 0, N)
    log = [json.loads(x) for x in run_cli(["log", "--format", "jsonl"]).stdout.splitlines()]
    assert [e["id"] for e in log] == [f"e{i}" for i in range(N)]
    assert [e["seq"] for e in log] == list(range(1, N + 1))


def test_rerunning_an_import_that_stopped_part_way_completes_it(project: Path) -> None:
    part, whole = project / "part.jsonl", project / "whole.jsonl"
    part.write_text("\n".join(_lines(7_000)) + "\n")
    whole.write_text("\n".join(_lines(N)) + "\n")
    assert run_cli(["import", str(part)]).exit_code == 0
    summary = json.loads(run_cli(["import", str(whole), "--format", "json"]).stdout)
    assert (summary["recorded"], summary["duplicates"]) == (N - 7_000, 7_000)
    assert _count() == N


def test_skip_invalid_in_chunks_records_the_good_lines(project: Path) -> None:
    f = project / "in.jsonl"
    lines = _lines(N)
    lines.insert(6_000, "not json")
    f.write_text("\n".join(lines) + "\n")
    r = run_cli(["import", str(f), "--skip-invalid", "--format", "json"])
    summary = json.loads(r.stdout)
    assert (summary["recorded"], summary["invalid"]) == (N, 1)
    assert _count() == N


def test_a_long_input_is_read_again_when_its_checked_events_are_too_many_to_keep(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checking pass keeps the checked events for the writing pass up to a size; past it the
    writing pass reads the input again: the same log either way, with history and no-id lines."""
    from evflow.services import importing

    t = "2016-10-01T00:00:00.5Z"
    lines = [
        *(json.dumps({**json.loads(x), "time": t}) for x in _lines(3)),
        json.dumps({"type": "t.y", "source": "bench", "time": t, "data": {"s": "é"}}),  # no id
        json.dumps({"type": "t.z", "source": "s", "id": "h1", "seq": 9,
                    "recordedtime": "2016-10-02T00:00:00Z", "time": "2016-10-01T09:00:00+09:00"}),
    ]  # fmt: skip
    logs = []
    for keep in (importing.KEEP_CHECKED, 0):
        monkeypatch.setattr(importing, "KEEP_CHECKED", keep)
        db = project / f"keep{keep}.db"
        f = project / "in.jsonl"
        f.write_text("\n".join(lines) + "\n")
        r = run_cli(["--db", str(db), "import", str(f), "--format", "json"])
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["recorded"] == 5
        out = run_cli(["--db", str(db), "log", "--format", "jsonl"]).stdout.splitlines()
        logs.append([json.loads(x) for x in out])
    for log in logs:  # the store's clock, except on the history line
        for e in log[:4]:
            e.pop("recordedtime")
    assert logs[0] == logs[1]
    assert logs[0][3]["data"] == {"s": "é"} and logs[0][4]["recordedtime"].startswith("2016-10-02")


def test_what_an_import_writes_reads_back_as_the_lines_said(project: Path) -> None:
    """The import writes its events with orjson (evflow.core.jsontext): integers past 64 bits,
    floats under 1e-4, non-ASCII text and deep data read back as the input said, in the log and
    in derived events."""
    (project / "rules").mkdir()
    (project / "rules" / "copy.yaml").write_text(
        "version: 1\nrules:\n  - name: copy\n    on: t.x\n    then:\n"
        "      - emit: t.copied\n        data: ${{ data }}\n"
    )
    data = {
        "big": 2**64 + 1, "neg": -(2**63) - 7, "small": 1e-05, "tiny": -6.5e-300,
        "text": "한국어 ✓ \u2028", "deep": [[[{"a": [1.5, None, True]}]]], "e": 1e16,
    }  # fmt: skip
    f = project / "in.jsonl"
    f.write_text(json.dumps({"type": "t.x", "source": "s", "id": "x1", "data": data}) + "\n")
    r = run_cli(["import", str(f)])
    assert r.exit_code == 0, r.stderr
    log = [json.loads(x) for x in run_cli(["log", "--format", "jsonl"]).stdout.split("\n") if x]
    assert [e["type"] for e in log] == ["t.x", "t.copied"]
    assert log[0]["data"] == data
    # CEL holds integers in 64 bits: the copy's big ones are doubles, as in any rule
    without = {k: v for k, v in data.items() if k not in ("big", "neg")}
    assert {k: v for k, v in log[1]["data"].items() if k not in ("big", "neg")} == without


def test_events_no_rule_routes_are_recorded_as_those_that_rules_route(project: Path) -> None:
    """The writing pass appends an event that no rule routes from the columns kept by the
    checking pass (its text not decoded again): the log is the same as an --atomic import's,
    which decodes every line, subjects, lineage and extensions included."""
    (project / "rules").mkdir()
    (project / "rules" / "r.yaml").write_text(
        "version: 1\nrules:\n  - name: copy\n    on: t.rout*\n    then:\n"
        "      - emit: t.copied\n        subject: ${{ data.i }}\n"
        "        data:\n          i: ${{ data.i }}\n"
    )
    lines = []
    for i in range(300):
        event = {"type": "t.routed" if i % 3 else "t.plain", "source": "s", "id": f"e{i}",
                 "time": "2016-10-01T00:00:00.5+09:00", "data": {"i": i, "x": 1e-05}}  # fmt: skip
        if i % 2:
            event |= {"subject": f"sub {i}", "causationid": f"c{i}", "myext": i}
        lines.append(json.dumps(event))
    lines.append(lines[5])  # a duplicate
    f = project / "in.jsonl"
    f.write_text("\n".join(lines) + "\n")

    def logged(*args: str) -> list[list[dict]]:
        """The log, and the parts of it that the row's columns select (type, subject, time)."""
        for name in ("evflow.db", "evflow.db-wal", "evflow.db-shm"):
            (project / name).unlink(missing_ok=True)
        r = run_cli(["--db", "evflow.db", "import", str(f), *args])
        assert r.exit_code == 0, r.stderr
        views = []
        for view in ([], ["-t", "t.plain"], ["--subject", "sub 3"], ["--since", "2016-09-30"]):
            out = run_cli(["--db", "evflow.db", "log", "--format", "jsonl", *view]).stdout
            views.append([
                {k: v for k, v in json.loads(x).items() if k != "recordedtime"}
                for x in out.splitlines()
            ])  # fmt: skip
        shown = json.loads(run_cli(["--db", "evflow.db", "show", "e1", "--format", "json"]).stdout)
        views.append([c["event"]["id"] for c in shown["caused"]])
        return views

    (chunked, plains, subject, since, e1), atomic = logged(), logged("--atomic")
    assert [chunked, plains, subject, since, e1] == atomic
    assert len(chunked) == 300 + 200 and len(plains) == 100 and len(since) == 500
    assert [e["id"] for e in subject] == ["e3"] and len(e1) == 1
    plain = next(e for e in chunked if e["id"] == "e3")
    assert plain["subject"] == "sub 3" and plain["myext"] == 3 and plain["causationid"] == "c3"
    assert plain["time"] == "2016-09-30T15:00:00.500000Z" and plain["data"] == {"i": 3, "x": 1e-05}


@pytest.mark.parametrize("mode", [[], ["--atomic"], ["--skip-invalid"]])
def test_a_line_that_is_json_but_no_object_is_a_bad_line(project: Path, mode: list[str]) -> None:
    f = project / "in.jsonl"
    f.write_text('{"type": "a", "id": "1"}\n"str"\n7\n{"type": "a", "id": "2"}\n')
    r = run_cli(["import", str(f), *mode])
    if mode == ["--skip-invalid"]:
        assert r.exit_code == 0 and _count() == 2, r.stderr
        assert "in.jsonl:2: " in r.stderr and "in.jsonl:3: " in r.stderr
    else:
        assert r.exit_code == 2 and _count() == 0, r.stderr
        assert "in.jsonl:2: " in r.stderr and "must be a JSON object" in r.stderr
    assert "Traceback" not in r.stderr and "AttributeError" not in r.stderr


def test_an_emit_during_a_long_import_gets_in_between_two_chunks(project: Path) -> None:
    """Other writers get their turn between chunks (issue 16), now that the import pauses only
    when one waits (it holds DB-evflow.wait shared): the emit is recorded before the import
    ends. (Reading and decoding the next chunk leaves a gap of its own, so this holds even
    without the pause; the next test checks that a waiting writer is seen.)"""
    f = project / "in.jsonl"
    f.write_text("\n".join(_lines(80_000)) + "\n")
    db = project / "log.db"
    importing = subprocess.Popen(
        [evflow_exe(), "--db", str(db), "import", str(f), "--no-dispatch"],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _rows(db) == 0 and importing.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the first chunk is committed
        emit = run_process(["--db", str(db), "emit", "t.late", "--data", "{}"], cwd=project)
        assert emit.returncode == 0, emit.stderr
    finally:
        _, err = importing.communicate(timeout=120)
    assert importing.returncode == 0, err
    with sqlite3.connect(db) as con:
        [(late,)] = con.execute("SELECT seq FROM events WHERE type = 't.late'").fetchall()
        [(last,)] = con.execute("SELECT MAX(seq) FROM events").fetchall()
    assert 10_000 <= late < last  # recorded between two chunks, not after the import


def test_only_a_waiting_writer_makes_an_import_pause(tmp_path: Path) -> None:
    from evflow.store.sqlite import SqliteStore

    path = str(tmp_path / "log.db")
    got_in = threading.Event()

    def emitter() -> None:  # another writer: queues for the lock while the chunk holds it
        store = SqliteStore(path)
        try:
            with store.write():
                got_in.set()
        finally:
            store.close()

    first = SqliteStore(path)
    try:
        assert not first.writers_waiting()
        with first.write():  # holds the write lock, as an import's chunk does
            waiter = threading.Thread(target=emitter)
            waiter.start()
            deadline = time.monotonic() + 10
            while not first.writers_waiting() and time.monotonic() < deadline:
                time.sleep(0.005)
            assert first.writers_waiting()
        waiter.join(10)  # the chunk is committed: the waiter took its turn
        assert got_in.is_set()
        assert not first.writers_waiting()
    finally:
        first.close()


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
