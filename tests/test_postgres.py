"""PostgreSQL-only behaviour: ordering under concurrent writers, schemas, and unreachable servers.

Needs EVFLOW_TEST_PG (e.g. postgresql://postgres@127.0.0.1:5432/test); without it these tests are
skipped, but in CI (env CI set) a server that cannot be reached fails the run instead.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evflow.core.events import normalize
from evflow.core.records import EventFilter
from evflow.errors import StorageUnavailable
from evflow.store import open_store
from evflow.store.postgres import PostgresStore, split_url
from evflow.store.sql import SCHEMA_VERSION
from tests import pg

pytestmark = pytest.mark.postgres

WRITERS, PER_WRITER = 4, 250
TOTAL = WRITERS * PER_WRITER


@pytest.fixture(scope="module")
def server() -> None:
    if not os.environ.get(pg.ENV):
        pytest.skip(f"{pg.ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    reason = pg.unreachable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the PostgreSQL tests)")
        pytest.skip(reason)


@pytest.fixture
def url(server: None) -> Iterator[str]:
    with pg.fresh_schema_url() as fresh:
        yield fresh


def ev(etype: str = "order.placed", **data: object) -> dict:
    return normalize({"type": etype, "data": data})


# -- concurrent writers, one follower ---------------------------------------------------------


def _writer(url: str, worker: int, start: multiprocessing.synchronize.Event) -> None:
    store = open_store(url)
    start.wait(60)
    for i in range(PER_WRITER):
        store.append(normalize({"type": "load.test", "data": {"w": worker, "i": i}}))
    store.close()


def _follower(url: str, out: str, ready: multiprocessing.synchronize.Event) -> None:
    """Poll the log from the last seq seen, recording every (seq, worker, i) in the order seen."""
    store = open_store(url)
    seen: list[list[int]] = []
    polls = 0
    last_seen = 0
    ready.set()
    deadline = time.monotonic() + 120
    while len(seen) < TOTAL and time.monotonic() < deadline:
        polls += 1
        for e in store.read(EventFilter(since_seq=last_seen)):
            seen.append([e["seq"], e["data"]["w"], e["data"]["i"]])
            last_seen = e["seq"]
    store.close()
    Path(out).write_text(json.dumps({"seen": seen, "polls": polls}))


def test_a_follower_sees_every_event_once_in_seq_order_under_concurrent_writers(
    url: str, tmp_path: Path
) -> None:
    open_store(url).close()
    ctx = multiprocessing.get_context("spawn")
    start, ready = ctx.Event(), ctx.Event()
    out = tmp_path / "seen.json"
    follower = ctx.Process(target=_follower, args=(url, str(out), ready))
    follower.start()
    writers = [ctx.Process(target=_writer, args=(url, w, start)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    assert ready.wait(60)
    start.set()
    for p in [*writers, follower]:
        p.join(180)
    assert [p.exitcode for p in writers] == [0] * WRITERS
    assert follower.exitcode == 0
    result = json.loads(out.read_text())
    seen = result["seen"]
    seqs = [s for s, _, _ in seen]
    assert len(seen) == TOTAL
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), "seq went backwards"
    assert seqs == list(range(1, TOTAL + 1))  # none missed, none twice, no gaps
    assert sorted((w, i) for _, w, i in seen) == [
        (w, i) for w in range(WRITERS) for i in range(PER_WRITER)
    ]
    # each writer's events appear in the order it appended them
    for w in range(WRITERS):
        assert [i for _, ww, i in seen if ww == w] == list(range(PER_WRITER))
    # the follower really raced the writers (more than one poll), and the log agrees with it
    assert result["polls"] > 1
    store = open_store(url)
    assert [e["seq"] for e in store.read()] == seqs
    times = [e["recordedtime"] for e in store.read()]
    assert times == sorted(times)  # one clock, read under the append lock
    store.close()


def _opener(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(60)
    store = open_store(url)
    store.append(ev("opened"))
    store.close()


def test_first_use_by_many_processes_at_once_creates_the_schema_once(server: None) -> None:
    ctx = multiprocessing.get_context("spawn")
    with pg.fresh_schema_url() as url:
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_opener, args=(url, barrier)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * 6
        store = open_store(url)
        assert [e["seq"] for e in store.read()] == list(range(1, 7))
        row = store.execute("SELECT value FROM evflow_meta WHERE key = 'schema_version'")
        assert row.fetchall() == [(str(SCHEMA_VERSION),)]
        store.close()


# -- passwords --------------------------------------------------------------------------------


def test_an_unreachable_server_is_storage_unavailable_without_the_password() -> None:
    pytest.importorskip("psycopg")
    secret = "s3cr3t-Pa55"
    with pytest.raises(StorageUnavailable) as caught:
        open_store(f"postgresql://evuser:{secret}@127.0.0.1:1/test?schema=x")
    err = caught.value
    assert err.exit_code == 4
    text = f"{err} {err.message} {err.hint} {err!r}"
    assert secret not in text
    assert "postgresql://evuser:***@127.0.0.1:1/test" in err.message
    assert "\n" not in err.message


def test_a_password_given_as_a_parameter_is_hidden_too() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StorageUnavailable) as caught:
        open_store("postgresql://evuser@127.0.0.1:1/test?password=hunter2&sslmode=disable")
    assert "hunter2" not in f"{caught.value} {caught.value.hint}"
    assert "password=***" in str(caught.value)


def test_display_url_hides_the_password(server: None) -> None:
    schema = pg.new_schema_name()
    with pg.fresh_schema_url(schema):
        # the test server trusts local connections, so any password is accepted and ignored
        base = pg.base_url().replace("://postgres@", "://postgres:hunter2@", 1)
        assert "hunter2" in base, "EVFLOW_TEST_PG must have the form postgresql://postgres@host/db"
        store = open_store(pg.with_params(base, schema=schema))
        assert "hunter2" not in store.display_url
        assert store.display_url.startswith("postgresql://postgres:***@")
        store.close()


def test_a_server_that_goes_away_is_storage_unavailable(url: str) -> None:
    app = pg.new_schema_name()
    store = open_store(pg.with_params(url, application_name=app))
    store.append(ev())
    killer = open_store(url)
    killer.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?", (app,)
    ).fetchall()
    killer.close()
    with pytest.raises(StorageUnavailable) as caught:
        store.last_seq()
    assert caught.value.exit_code == 4
    with pytest.raises(StorageUnavailable):
        store.append(ev())


# -- schemas ----------------------------------------------------------------------------------


def test_two_stores_on_different_schemas_are_independent(server: None) -> None:
    a_name, b_name = pg.new_schema_name(), pg.new_schema_name()
    with pg.fresh_schema_url(a_name) as a_url, pg.fresh_schema_url(b_name):
        # the second log is selected the libpq way, through search_path in options
        b_url = pg.with_params(pg.base_url(), options=f"-csearch_path={b_name}")
        a, b = PostgresStore(a_url), PostgresStore(b_url)
        assert (a.schema, b.schema) == (a_name, b_name)
        assert [a.append(ev("a.x")).seq for _ in range(3)] == [1, 2, 3]
        assert b.last_seq() == 0 and list(b.read()) == []
        assert b.append(ev("b.x")).seq == 1
        assert [e["type"] for e in a.read()] == ["a.x"] * 3
        assert [e["type"] for e in b.read()] == ["b.x"]

        # each schema has its own append lock: a write held open on one does not block the other
        done = threading.Event()
        with a.write() as tx:
            tx.append(ev("a.y"))

            def append_to_b() -> None:
                b.append(ev("b.y"))
                done.set()

            worker = threading.Thread(target=append_to_b)
            worker.start()
            assert done.wait(10), "a write on one schema blocked appends on another"
        worker.join()
        assert (a.last_seq(), b.last_seq()) == (4, 2)

        rows = a.execute(
            "SELECT table_schema, COUNT(*) FROM information_schema.tables"
            " WHERE table_schema IN (?, ?) GROUP BY table_schema ORDER BY table_schema",
            sorted([a_name, b_name]),
        ).fetchall()
        # evflow_meta, events, deliveries, snapshots, checkpoints, schedule_ticks, rule_errors,
        # timers, snapshot_marks, snapshot_history
        assert [int(n) for _, n in rows] == [10, 10]
        a.close()
        b.close()


def test_the_default_schema_is_evflow() -> None:
    assert split_url("postgresql://u@h/db") == ("postgresql://u@h/db", "evflow")
    assert split_url("postgres://u@h/db?schema=s1&sslmode=disable") == (
        "postgresql://u@h/db?sslmode=disable",
        "s1",
    )
    assert split_url("postgresql://u@h/db?options=-c%20search_path%3Dlog2,public")[1] == "log2"


# -- streaming --------------------------------------------------------------------------------


def test_reads_stream_and_leave_no_transaction_open(url: str) -> None:
    app = pg.new_schema_name()
    store = open_store(pg.with_params(url, application_name=app))
    with store.write() as tx:
        for i in range(2500):  # more than one fetch of the server-side cursor
            tx.append(ev(n=i))
    assert [e["seq"] for e in store.read()] == list(range(1, 2501))

    # writing while a read is still streaming works (the stream has its own transaction)
    for n, e in enumerate(store.read(EventFilter(until_seq=1200))):
        if n % 400 == 0:
            store.append(ev("during.read", seq=e["seq"]))
    assert store.last_seq() == 2503

    # a stream abandoned early closes its transaction at once
    stream = store.read()
    next(stream)
    del stream

    def open_transactions() -> int:
        row = store.execute(
            "SELECT COUNT(*) FROM pg_stat_activity"
            " WHERE application_name = ? AND state LIKE 'idle in transaction%'",
            (app,),
        ).fetchone()
        return int(row[0])

    assert open_transactions() == 0
    store.get(1), store.stats(), store.last_seq()
    assert open_transactions() == 0
    store.close()
