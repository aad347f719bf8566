"""The store contract: every backend passes these (SQLite; PostgreSQL with EVFLOW_TEST_PG)."""

from __future__ import annotations

import multiprocessing

import pytest

from evflow.core.events import normalize
from evflow.core.records import EventFilter
from evflow.store import open_store


def ev(etype: str = "order.placed", **data: object) -> dict:
    return normalize({"type": etype, "data": data})


def test_append_then_read_returns_the_same_events_in_order(db_url: str) -> None:
    store = open_store(db_url)
    sent = [ev("order.placed", n=i) for i in range(20)]
    seqs = [store.append(e).seq for e in sent]
    assert seqs == list(range(1, 21))
    got = list(store.read())
    assert [g["seq"] for g in got] == seqs
    for original, read in zip(sent, got, strict=True):
        assert {k: v for k, v in read.items() if k not in ("seq", "recordedtime")} == original
        assert read["recordedtime"].endswith("Z")
    store.close()


def test_source_and_id_are_the_identity(db_url: str) -> None:
    store = open_store(db_url)
    first = store.append(normalize({"type": "a", "id": "x1", "source": "s1"}))
    again = store.append(normalize({"type": "a", "id": "x1", "source": "s1", "data": {"z": 1}}))
    other_source = store.append(normalize({"type": "a", "id": "x1", "source": "s2"}))
    assert not first.duplicate and again.duplicate and not other_source.duplicate
    assert again.seq == first.seq
    assert store.last_seq() == 2
    assert "data" not in store.get(1)  # an event without data stays without data


def test_a_failed_transaction_records_nothing(db_url: str) -> None:
    store = open_store(db_url)
    store.append(ev())
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.append(ev())
        tx.append(ev())
        raise RuntimeError("boom")
    assert store.last_seq() == 1
    assert store.append(ev()).seq >= 2
    assert [e["seq"] for e in store.read()] == [1, store.last_seq()]


def test_filters(db_url: str) -> None:
    store = open_store(db_url)
    store.append(
        normalize({"type": "member.created", "subject": "u1", "time": "2020-01-01T00:00:00Z"})
    )
    store.append(
        normalize({"type": "order.placed", "subject": "u1", "time": "2020-01-02T00:00:00Z"})
    )
    store.append(
        normalize({"type": "order.shipped", "subject": "u2", "time": "2020-01-03T00:00:00Z"})
    )
    store.append(
        normalize({"type": "member.deleted", "subject": "u1", "time": "2020-01-04T00:00:00Z"})
    )

    def seqs(**kw: object) -> list[int]:
        return [e["seq"] for e in store.read(EventFilter(**kw))]  # type: ignore[arg-type]

    assert seqs(types=("order.*",)) == [2, 3]
    assert seqs(types=("member.created", "order.shipped")) == [1, 3]
    assert seqs(types=("member.[cd]*",)) == [1, 4]
    assert seqs(subject="u1") == [1, 2, 4]
    assert seqs(since_seq=2) == [3, 4]
    assert seqs(until_seq=2) == [1, 2]
    assert seqs(since_time="2020-01-02T00:00:00.000000Z") == [2, 3, 4]
    assert seqs(until_time="2020-01-03T00:00:00.000000Z") == [1, 2]
    assert seqs(limit=2) == [1, 2]
    assert seqs(types=("member.[cd]*",), limit=1) == [1]


def test_get_by_id_or_seq_and_causation(db_url: str) -> None:
    store = open_store(db_url)
    cause = ev("order.placed")
    store.append(cause)
    child = normalize(
        {"type": "shipment.requested", "causationid": cause["id"], "correlationid": cause["id"]}
    )
    store.append(child)
    assert store.get(cause["id"])["seq"] == 1
    assert store.get("2")["id"] == child["id"]
    assert store.get(99) is None
    assert [e["id"] for e in store.caused_by(cause["id"])] == [child["id"]]


def test_stats_count_by_type(db_url: str) -> None:
    store = open_store(db_url)
    for t in ("a", "b", "a"):
        store.append(ev(t))
    s = store.stats()
    assert s.events == 3 and s.last_seq == 3 and s.by_type == {"a": 2, "b": 1}


def test_reopening_keeps_the_schema_version_and_data(db_url: str) -> None:
    store = open_store(db_url)
    store.append(ev())
    store.close()
    again = open_store(db_url)
    assert again.last_seq() == 1
    row = again.execute("SELECT value FROM evflow_meta WHERE key = 'schema_version'").fetchone()
    assert int(row[0]) >= 1


def _writer(url: str, worker: int, count: int) -> None:
    store = open_store(url)
    for i in range(count):
        store.append(normalize({"type": "load.test", "data": {"w": worker, "i": i}}))
    store.close()


def test_concurrent_writers_get_gapless_unique_seqs(db_url: str) -> None:
    """8 processes x 200 appends at once: 1,600 events, seq 1..1600, none lost or locked out."""
    open_store(db_url).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db_url, w, 200)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    store = open_store(db_url)
    events = list(store.read())
    assert [e["seq"] for e in events] == list(range(1, 1601))
    per_worker = {}
    for e in events:
        per_worker.setdefault(e["data"]["w"], []).append(e["data"]["i"])
    # each writer's own events stay in its order
    assert all(v == list(range(200)) for v in per_worker.values()) and len(per_worker) == 8


def test_a_version_1_database_is_migrated(db_url: str) -> None:
    from evflow.store.sql import SCHEMA_VERSION

    store = open_store(db_url)
    store.append(ev())
    with store.write() as tx:
        tx.execute("DROP TABLE rule_errors")
        tx.execute("UPDATE evflow_meta SET value = '1' WHERE key = 'schema_version'")
    store.close()
    again = open_store(db_url)
    assert again.rule_errors(1) == [] and again.last_seq() == 1
    row = again.execute("SELECT value FROM evflow_meta WHERE key = 'schema_version'").fetchone()
    assert int(row[0]) == SCHEMA_VERSION


def test_a_version_4_database_loses_the_redundant_due_index(db_url: str) -> None:
    """v5 drops deliveries_due: deliveries_waiting begins with its columns, and every index is
    written for each delivery recorded and each status it goes through."""
    store = open_store(db_url)
    with store.write() as tx:
        tx.execute("CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)")
        tx.execute("UPDATE evflow_meta SET value = '4' WHERE key = 'schema_version'")
    store.close()
    again = open_store(db_url)
    if type(again).__name__ == "SqliteStore":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    names = {r[0] for r in again.execute(sql).fetchall()}
    assert "deliveries_due" not in names and "deliveries_waiting" in names
    again.close()
