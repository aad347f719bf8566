"""`query --as-of` from the copies replay keeps every COPY_EVERY events (issue 16): the same rows
as folding the log from seq 1, by seq and by time, whatever the distance to a copy, after
rebuilds and definition changes, and with back-filled (out of time order) events."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from evflow.services import replay as replay_module
from evflow.services.query import as_of
from evflow.services.replay import replay
from evflow.store import open_store, snapshots
from tests.test_replay import COUNTER, append, rules


def _events(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = f"k{rng.randrange(12)}"
        # mostly increasing times, some back-filled into the past
        minute = i if rng.random() > 0.15 else max(0, i - rng.randrange(1, 40))
        time = f"2020-01-01T{minute // 60:02d}:{minute % 60:02d}:00Z"
        roll = rng.random()
        kind = "t.del" if roll < 0.08 else ("t.set" if roll < 0.15 else "t.add")
        data = {"k": k, "n": rng.randrange(1, 5)}
        out.append({"type": kind, "time": time, "data": data})
    return out


def _from_scratch(store, rs, monkeypatch, **at):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        m.setattr(snapshots, "nearest_mark", lambda *a, **k: None)
        return as_of(store, rs, "totals", **at)


def test_as_of_from_copies_equals_a_fold_from_the_start(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_module, "COPY_EVERY", 25)
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    events = _events(300, seed=1)
    append(store, events[:130])
    replay(store, rs, batch_size=11)
    append(store, events[130:])
    replay(store, rs, batch_size=7)
    marks = store.execute("SELECT position FROM snapshot_marks ORDER BY position").fetchall()
    assert len(marks) >= 8  # a copy at least every 25 events
    times = sorted({e["time"] for e in events})
    for seq in [1, 24, 25, 26, 99, 130, 131, 200, 287, 300, 350]:
        assert as_of(store, rs, "totals", seq=seq) == _from_scratch(store, rs, monkeypatch, seq=seq)
    for time in times[::17] + ["2019-01-01T00:00:00.000000Z", "2021-01-01T00:00:00.000000Z"]:
        canonical = time if time.endswith(".000000Z") else time.replace("Z", ".000000Z")
        assert as_of(store, rs, "totals", time=canonical) == _from_scratch(
            store, rs, monkeypatch, time=canonical
        )


def test_copies_of_another_definition_are_not_used(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_module, "COPY_EVERY", 20)
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    append(store, _events(100, seed=2))
    replay(store, rs)
    changed = rules(tmp_path, COUNTER.replace("set: {last:", "set: {final:"))
    assert as_of(store, changed, "totals", seq=90) == _from_scratch(
        store, changed, monkeypatch, seq=90
    )
    replay(store, changed)  # a rebuild: the old definition's copies go
    (definitions,) = store.execute(
        "SELECT COUNT(DISTINCT definition) FROM snapshot_marks"
    ).fetchone()
    assert definitions == 1
    replay(store, changed, rebuild=True)
    assert as_of(store, changed, "totals", seq=61) == _from_scratch(
        store, changed, monkeypatch, seq=61
    )


def test_as_of_reads_from_the_nearest_copy(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_module, "COPY_EVERY", 50)
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    append(store, _events(400, seed=3))
    replay(store, rs, batch_size=50)
    seen: list[int] = []
    scan = store.scan_until

    def spy(seq, time=None, after=0):  # type: ignore[no-untyped-def]
        seen.append(after)
        return scan(seq, time, after)

    monkeypatch.setattr(store, "scan_until", spy)
    as_of(store, rs, "totals", seq=370)
    assert seen == [350]


def _wide_events(n: int, keys: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"type": "t.add", "data": {"k": f"k{rng.randrange(keys)}", "n": rng.randrange(1, 5)}}
        for _ in range(n)
    ]


def _marks(store) -> list[int]:  # type: ignore[no-untyped-def]
    return [p for (p,) in store.execute("SELECT position FROM snapshot_marks ORDER BY position")]


def test_copies_are_spaced_by_the_snapshot_size_and_a_rebuild_replaces_them_all(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy writes every row: replay keeps one at most every COPY_ROWS_FACTOR x rows events
    (so a rebuild's cost per event stays flat as the snapshot grows), as-of answers stay the
    same, and a rebuild leaves only its own copies (none of its predecessor's, even where it
    made none)."""
    monkeypatch.setattr(replay_module, "COPY_EVERY", 10)
    monkeypatch.setattr(replay_module, "ASIDE_WRITE_EVERY", 10)  # as both are in use: 50,000
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    append(store, _wide_events(400, keys=60, seed=5))
    monkeypatch.setattr(replay_module, "COPY_ROWS_FACTOR", 0)  # every multiple, as before
    replay(store, rs, batch_size=7)
    dense = _marks(store)
    assert len(dense) == 40

    monkeypatch.setattr(replay_module, "COPY_ROWS_FACTOR", 2)
    replay(store, rs, batch_size=7, rebuild=True)
    sparse = _marks(store)
    assert sparse[0] == dense[0]  # the first crossing copies
    # later copies are at least twice the rows then (up to 60) apart: far fewer than before
    assert all(b - a >= 10 for a, b in zip(sparse, sparse[1:], strict=False))
    assert 4 <= len(sparse) <= 12, sparse
    (history,) = store.execute(
        "SELECT COUNT(DISTINCT position) FROM snapshot_history"
    ).fetchone()
    assert history == len(sparse)
    for seq in [1, 9, 10, 11, 55, 120, 121, 250, 399, 400]:
        assert as_of(store, rs, "totals", seq=seq) == _from_scratch(store, rs, monkeypatch, seq=seq)

    # the same positions as a rebuild of a log that had no copies
    fresh = open_store(str(tmp_path / "fresh.db"))
    append(fresh, _wide_events(400, keys=60, seed=5))
    replay(fresh, rs, batch_size=7, rebuild=True)
    assert _marks(fresh) == sparse


def test_a_copy_dropped_while_as_of_reads_it_is_not_taken_for_an_empty_one(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """as-of reads a copy's mark, then its rows: a rebuild in another process that drops or redoes
    that copy in between must not leave it folding from the mark's position with no rows."""
    monkeypatch.setattr(replay_module, "COPY_EVERY", 25)
    monkeypatch.setattr(replay_module, "ASIDE_WRITE_EVERY", 25)
    rs = rules(tmp_path, COUNTER)
    reader = open_store(db_url)
    writer = open_store(db_url)
    append(writer, _wide_events(100, keys=30, seed=9))
    for upto in range(30, 101, 10):  # kept up to date in small steps, as query does
        replay(writer, rs, batch_size=5, until_seq=upto)
    assert len(_marks(writer)) >= 3
    truth = _from_scratch(reader, rs, monkeypatch, seq=60)
    read_rows = snapshots.copy_rows
    raced: list[int] = []

    def copy_rows_racing_a_rebuild(store, mark):  # type: ignore[no-untyped-def]
        if not raced:  # another process: `evflow replay --rebuild` commits between the reads
            raced.append(mark.position)
            replay(writer, rs, rebuild=True, batch_size=5)
        return read_rows(store, mark)

    monkeypatch.setattr(snapshots, "copy_rows", copy_rows_racing_a_rebuild)
    assert as_of(reader, rs, "totals", seq=60) == truth
    assert raced  # the race happened
