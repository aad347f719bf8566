"""Replay with checkpoints: incremental, rebuilds, handler errors, crashes, and as-of."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evflow.app import Evflow
from evflow.core.events import normalize
from evflow.core.rules import RuleSet
from evflow.rulefiles.loader import load_rules
from evflow.services.query import as_of, query
from evflow.services.replay import ReplayFailed, UnknownProjection, replay
from evflow.store import open_store, snapshots
from evflow.store.sql import SqlStore
from tests.conftest import REPO

COUNTER = """
version: 1
projections:
  - name: totals
    key: data.k
    on:
      t.add:
        inc: {n: "${{ data.n }}"}
        set: {last: "${{ data.n }}"}
      t.del: delete
      t.set: upsert
"""


def rules(tmp: Path, text: str) -> RuleSet:
    folder = tmp / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(text)
    return load_rules(folder)


def append(store: SqlStore, events: list[dict]) -> None:
    with store.write() as tx:
        for i, e in enumerate(events):
            tx.append(normalize({"source": "test", "id": f"e{store.last_seq()}-{i}", **e}))


def stored(store: SqlStore, name: str) -> dict[str, tuple[dict, int]]:
    return {k: (json.loads(s), q) for k, s, q in snapshots.rows(store, name)}


def shop(db_url: str) -> Evflow:
    flow = Evflow(db=db_url, ruleset=load_rules(REPO / "rules"))
    lines = (REPO / "sample_events.jsonl").read_text().splitlines()
    flow.import_events((f"sample:{i}", json.loads(x)) for i, x in enumerate(lines, 1))
    return flow


def test_shop_example(db_url: str, project: Path) -> None:
    flow = shop(db_url)
    results = replay(flow.store, flow.ruleset)
    assert [r.name for r in results] == ["members", "member_orders"]
    members = {r.key: r.state for r in query(flow.store, flow.ruleset, "members")}
    assert sorted(members) == ["u1", "u3"]
    assert members["u1"]["email"] == "minji@new.example.com"  # merged
    orders = {r.key: r.state for r in query(flow.store, flow.ruleset, "member_orders")}
    assert orders["u1"]["orders"] == 3 and orders["u1"]["amount"] == 245
    assert orders["u1"]["last_product"] == "p-7"
    # as of a time before u2's deletion (2016-10-07T00:30Z) and after it
    before = as_of(flow.store, flow.ruleset, "members", time="2016-10-07T00:00:00.000000Z")
    after = as_of(flow.store, flow.ruleset, "members", time="2016-10-08T00:00:00.000000Z")
    assert [r.key for r in before] == ["u1", "u2", "u3"]
    assert [r.key for r in after] == ["u1", "u3"]
    deleted_at = next(e["seq"] for e in flow.events() if e["type"] == "member.deleted")
    assert [r.key for r in as_of(flow.store, flow.ruleset, "members", seq=deleted_at - 1)] == [
        "u1",
        "u2",
        "u3",
    ]
    assert [r.key for r in as_of(flow.store, flow.ruleset, "members", seq=deleted_at)] == [
        "u1",
        "u3",
    ]
    # as_of did not touch the stored snapshot
    assert sorted(stored(flow.store, "members")) == ["u1", "u3"]


def test_incremental_and_recreate(db_url: str, tmp_path: Path) -> None:
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    append(store, [{"type": "t.add", "data": {"k": "a", "n": 1}}] * 3)
    replay(store, rs, batch_size=2)
    assert stored(store, "totals")["a"][0] == {"n": 3, "last": 1}
    append(
        store,
        [{"type": "t.del", "data": {"k": "a"}}, {"type": "t.add", "data": {"k": "a", "n": 5}}],
    )
    (r,) = replay(store, rs)
    assert r.start == 3 and r.position == 5 and r.applied == 2
    assert stored(store, "totals") == {"a": ({"n": 5, "last": 5}, 5)}
    assert snapshots.checkpoint(store, "totals").position == 5  # type: ignore[union-attr]


def test_a_cel_key_leaves_a_cel_template_the_row(db_url: str, tmp_path: Path) -> None:
    """A key evaluated by CEL binds the variables with no row yet; the handler's templates
    still see the row (first build, rebuild and incremental replay fold alike)."""
    store = open_store(db_url)
    rs = rules(
        tmp_path,
        """
version: 1
projections:
  - name: runs
    key: data.k + "-x"
    on:
      t.add:
        set: {prev: "${{ state == null ? 0 : state.n }}", n: "${{ data.n }}"}
""",
    )
    append(store, [{"type": "t.add", "data": {"k": "a", "n": n}} for n in (1, 2, 3)])
    replay(store, rs)
    assert stored(store, "runs") == {"a-x": ({"prev": 2, "n": 3}, 3)}
    replay(store, rs, rebuild=True)
    assert stored(store, "runs") == {"a-x": ({"prev": 2, "n": 3}, 3)}
    append(store, [{"type": "t.add", "data": {"k": "a", "n": 4}}])
    replay(store, rs)
    assert stored(store, "runs") == {"a-x": ({"prev": 3, "n": 4}, 4)}


def test_a_large_batch_reads_exact_values(db_url: str, tmp_path: Path) -> None:
    """A batch of 1,000 events or more is read by orjson (rows.bulk_decoder), which would read
    an integer beyond 64 bits as a float: such bodies are read exactly, the others alike."""
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    big = 2**70
    events = [{"type": "t.add", "data": {"k": f"i{i % 3}", "n": big + i}} for i in range(600)]
    events += [{"type": "t.add", "data": {"k": f"f{i % 3}", "n": i * 0.5}} for i in range(600)]
    append(store, events)
    (r,) = replay(store, rs)
    assert r.applied == 1200
    for k in range(3):
        ints = [big + i for i in range(600) if i % 3 == k]
        halves = [i * 0.5 for i in range(600) if i % 3 == k]
        assert stored(store, "totals")[f"i{k}"][0] == {"n": sum(ints), "last": ints[-1]}
        assert stored(store, "totals")[f"f{k}"][0] == {"n": sum(halves), "last": halves[-1]}


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16le"])
def test_a_large_batch_reads_a_database_in_either_encoding(tmp_path: Path, encoding: str) -> None:
    """SQLite hands a replay the bodies' bytes where its text is UTF-8; a database another tool
    made in UTF-16 still replays (its text is read as text)."""
    import sqlite3

    db = tmp_path / "log.db"
    with sqlite3.connect(db) as con:
        con.execute(f"PRAGMA encoding = '{encoding}'")
        con.execute("CREATE TABLE theirs (x)")
    store, rs = open_store(str(db)), rules(tmp_path, COUNTER)
    append(store, [{"type": "t.add", "data": {"k": "é", "n": 1}}] * 1_200)
    (r,) = replay(store, rs)
    assert r.applied == 1_200 and stored(store, "totals") == {"é": ({"n": 1_200, "last": 1}, 1_200)}
    assert as_of(store, rs, "totals", seq=1_100)[0].state == {"n": 1_100, "last": 1}


def test_a_body_that_is_not_utf8_is_a_storage_error(tmp_path: Path) -> None:
    """A body another program wrote as bytes that are not UTF-8 stops the replay as a storage
    problem (exit 4), as reading it as text did, with the event's seq."""
    import sqlite3

    from evflow.errors import StorageUnavailable

    db = tmp_path / "log.db"
    store, rs = open_store(str(db)), rules(tmp_path, COUNTER)
    append(store, [{"type": "t.add", "data": {"k": "a", "n": 1}}] * 1_200)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE events SET body = CAST(X'7b2261223a22ff227d' AS TEXT) WHERE seq = 7")
    with pytest.raises(StorageUnavailable, match="event seq 7: its stored body is not UTF-8"):
        replay(store, rs)


def test_skipped_keys_are_counted(db_url: str, tmp_path: Path) -> None:
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    append(
        store, [{"type": "t.add", "data": {"n": 1}}, {"type": "t.add", "data": {"k": 1, "n": 2}}]
    )
    (r,) = replay(store, rs)
    assert r.skipped == 1 and "no such key: k" in r.skip_examples[0]
    assert list(stored(store, "totals")) == ["1"]  # a non-string key is stored as JSON text


def test_handler_error_leaves_snapshot_as_before_the_batch(db_url: str, tmp_path: Path) -> None:
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    append(store, [{"type": "t.add", "data": {"k": "a", "n": 1}}])
    replay(store, rs)
    before = stored(store, "totals")
    append(
        store,
        [
            {"type": "t.add", "data": {"k": "a", "n": 2}},
            {"type": "t.add", "data": {"k": "a", "n": "x"}},
        ],
    )
    with pytest.raises(ReplayFailed) as info:
        replay(store, rs)
    assert "projection totals: event seq 3 (t.add): inc n: expected a number" in str(info.value)
    assert stored(store, "totals") == before
    assert snapshots.checkpoint(store, "totals").position == 1  # type: ignore[union-attr]


def test_definition_change_rebuilds_with_notice(db_url: str, tmp_path: Path) -> None:
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    append(store, [{"type": "t.add", "data": {"k": "a", "n": 2}}])
    replay(store, rs)
    rs2 = rules(tmp_path, COUNTER.replace("inc: {n:", "inc: {m:"))
    notices: list[str] = []
    (r,) = replay(store, rs2, notice=notices.append)
    assert r.rebuilt == "definition changed" and "definition changed" in notices[0]
    assert stored(store, "totals") == {"a": ({"m": 2, "last": 2}, 1)}
    assert set(snapshots.checkpoints(store)) == {"totals"}  # the aside build was swapped in
    (r,) = replay(store, rs2, rebuild=True)
    assert r.rebuilt == "--rebuild"
    assert stored(store, "totals") == {"a": ({"m": 2, "last": 2}, 1)}


def test_unknown_projection(db_url: str, tmp_path: Path) -> None:
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    with pytest.raises(UnknownProjection, match=r"unknown projection 'nope' \(known: totals\)"):
        replay(store, rs, ["nope"])


KILLED = textwrap.dedent(
    """
    import sys
    from evflow.rulefiles.loader import load_rules
    from evflow.services.replay import replay
    from evflow.store import open_store
    replay(open_store(sys.argv[1]), load_rules(sys.argv[2]), batch_size=int(sys.argv[3]))
    """
)


def test_sigkill_during_replay_then_resume(tmp_path: Path) -> None:
    db = str(tmp_path / "kill.db")
    store, rs = open_store(db), rules(tmp_path, COUNTER)
    n = 40_000
    events = [
        {"type": "t.del" if i % 97 == 0 else "t.add", "data": {"k": f"k{i % 50}", "n": i % 7}}
        for i in range(n)
    ]
    append(store, events)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, db, str(tmp_path / "rules"), "50"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cp = snapshots.checkpoint(store, "totals")
        if cp is not None and cp.position > 2_000:
            break
        if proc.poll() is not None:
            pytest.fail("the replay finished before it could be killed")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = snapshots.checkpoint(store, "totals")
    assert killed_at is not None and 0 < killed_at.position < n
    replay(store, rs)
    clean = open_store(str(tmp_path / "clean.db"))
    append(clean, events)
    replay(clean, rs)
    assert stored(store, "totals") == stored(clean, "totals")


OPS = st.lists(
    st.tuples(
        st.sampled_from(["t.add", "t.del", "t.set", "t.other"]),
        st.sampled_from("abc"),
        st.integers(-5, 5),
    ),
    max_size=30,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, split=st.integers(0, 30), batch=st.integers(1, 7))
def test_replay_in_one_go_equals_two_steps_equals_as_of(
    tmp_path_factory: pytest.TempPathFactory, ops: list, split: int, batch: int
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    rs = rules(tmp, COUNTER)
    events = [{"type": t, "data": {"k": k, "n": n}} for t, k, n in ops]
    one, two = open_store(str(tmp / "one.db")), open_store(str(tmp / "two.db"))
    append(one, events)
    append(two, events)
    replay(one, rs, batch_size=batch)
    replay(two, rs, until_seq=min(split, len(events)), batch_size=batch)
    replay(two, rs, batch_size=batch)
    assert stored(one, "totals") == stored(two, "totals")
    folded = {r.key: (r.state, r.seq) for r in as_of(one, rs, "totals", seq=len(events))}
    assert folded == stored(one, "totals")


TWO = """
version: 1
projections:
  - name: a
    key: data.k
    on:
      t.add:
        inc: {n: "${{ data.n }}"}
  - name: b
    key: data.k
    on:
      t.add:
        inc: {FIELD: "${{ data.n }}"}
"""


def test_a_projection_ahead_of_another_is_not_set_back_and_refolded(
    db_url: str, tmp_path: Path
) -> None:
    """One replay of projections at different positions (one rebuilt after its definition
    changed, one a little behind the log): each batch starts where the one furthest behind is,
    and the one ahead takes no part until the batches reach it (its checkpoint was set back to the
    batch's end and the events between refolded: inc counted twice)."""
    store = open_store(db_url)
    append(store, [{"type": "t.add", "data": {"k": "x", "n": 1}}] * 60)
    replay(store, rules(tmp_path, TWO.replace("FIELD", "n")), batch_size=7)
    append(store, [{"type": "t.add", "data": {"k": "x", "n": 1}}] * 15)
    changed = rules(tmp_path, TWO.replace("FIELD", "m"))
    results = replay(store, changed, batch_size=7)  # b rebuilt from 0, a from 60
    assert {r.name: (r.start, r.position, r.applied) for r in results} == {
        "a": (60, 75, 15),
        "b": (0, 75, 75),
    }
    assert stored(store, "a") == {"x": ({"n": 75}, 75)}
    assert stored(store, "b") == {"x": ({"m": 75}, 75)}
