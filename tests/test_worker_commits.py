"""The worker (issue 16): the due query reads index ranges, in the same order as before; one
transaction records a delivery's outcome and claims the next, without waiting for the disk on
SQLite; a stop gives that claim back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from evflow.app import Evflow
from evflow.rulefiles.loader import load_rules
from evflow.services.dispatch import Dispatcher
from evflow.store import outbox

RULES = "version: 1\nrules:\n  - name: t\n    on: job.queued\n    then:\n      - run: [true]\n"


def _flow(db_url: str, tmp_path: Path, n: int) -> Evflow:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "w.yaml").write_text(RULES, encoding="utf-8")
    flow = Evflow(db=db_url, ruleset=load_rules(folder))
    lines = [(f"x:{i}", {"type": "job.queued", "data": {"i": i}}) for i in range(n)]
    flow.import_events(lines)
    return flow


def test_the_due_query_keeps_its_order(db_url: str, tmp_path: Path) -> None:
    flow = _flow(db_url, tmp_path, 30)
    store = flow.store
    # a mix: failed ones due earlier, a running one whose lease lapsed, pending ones
    store.execute(
        "UPDATE deliveries SET status = 'failed', next_attempt_at = ? WHERE id % 7 = 0",
        ("2000-01-01T00:00:00.000000Z",),
    )
    store.execute(
        "UPDATE deliveries SET status = 'running', lease_until = ?,"
        " next_attempt_at = ? WHERE id = 5",
        ("2000-01-01T00:00:00.000000Z", "1999-01-01T00:00:00.000000Z"),
    )
    store.execute(
        "UPDATE deliveries SET status = 'running', lease_until = ? WHERE id = 6",
        ("2999-01-01T00:00:00.000000Z",),
    )  # a live lease: not due
    now = "2100-01-01T00:00:00.000000Z"
    rows = store.execute(
        "SELECT id FROM deliveries WHERE (status IN ('pending', 'failed') AND next_attempt_at <= ?)"
        " OR (status = 'running' AND lease_until < ?) ORDER BY next_attempt_at, id",
        (now, now),
    ).fetchall()
    expected = [int(r[0]) for r in rows]
    for limit in (1, 4, 10, 100):
        assert [d.id for d in outbox.due(store, now, limit)] == expected[:limit]
    assert expected[0] == 5 and 6 not in expected


def test_draining_runs_every_delivery_once(db_url: str, tmp_path: Path) -> None:
    flow = _flow(db_url, tmp_path, 25)
    results = Dispatcher(flow.store, flow.ruleset, base_dir=tmp_path).drain()
    assert sorted(r.id for r in results) == list(range(1, 26))
    assert {r.status for r in results} == {"done"}
    counts = flow.store.execute(
        "SELECT status, attempts, COUNT(*) FROM deliveries GROUP BY status, attempts"
    ).fetchall()
    assert [tuple(x) for x in counts] == [("done", 1, 25)]


def _states(flow: Evflow) -> list[tuple[object, ...]]:
    rows = flow.store.execute(
        "SELECT id, status, attempts, lease_owner FROM deliveries ORDER BY id"
    ).fetchall()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("when", ["while the first program runs", "after the first result"])
def test_a_stop_gives_back_the_claim_made_for_the_next(
    db_url: str, tmp_path: Path, when: str
) -> None:
    """As a signal handler would: the transaction that records the first delivery claims the
    second, nothing starts it, and drain gives that claim back."""
    flow = _flow(db_url, tmp_path, 5)
    stop = threading.Event()
    dispatcher = Dispatcher(flow.store, flow.ruleset, base_dir=tmp_path, stop=stop)
    if when == "while the first program runs":
        dispatcher.on_start = lambda delivery_id: stop.set() if delivery_id is not None else None
        results = dispatcher.drain()
    else:
        results = dispatcher.drain(on_result=lambda r: stop.set())
    assert [r.id for r in results] == [1]
    assert _states(flow) == [(1, "done", 1, None)] + [(i, "pending", 0, None) for i in range(2, 6)]


def test_the_bookkeeping_commit_of_a_drain_does_not_wait_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the transaction that records an outcome and claims the next delivery commits
    with synchronous=NORMAL (durable across any process crash, so a claim is never lost while
    its program runs); every other write, and the appends above all, stays FULL."""
    flow = _flow(str(tmp_path / "log.db"), tmp_path, 3)
    levels: list[int] = []
    commit = flow.store.commit

    def committing() -> None:
        levels.append(int(flow.store.execute("PRAGMA synchronous").fetchone()[0]))
        commit()

    monkeypatch.setattr(flow.store, "commit", committing)
    results = Dispatcher(flow.store, flow.ruleset, base_dir=tmp_path).drain()
    assert [r.status for r in results] == ["done"] * 3
    flow.emit({"type": "job.queued", "data": {"i": 99}})
    # outcome 1 + claim 2, outcome 2 + claim 3 (claim 1 and outcome 3 are single statements),
    # then the emit's append
    assert levels == [1, 1, 2]
    assert int(flow.store.execute("PRAGMA synchronous").fetchone()[0]) == 2


def test_a_failing_report_gives_back_the_claim_made_for_the_next(
    db_url: str, tmp_path: Path
) -> None:
    """``evflow run --once | head -1``: printing the second result fails; the third delivery,
    claimed by the transaction that recorded the second, is pending again, not left running
    until its lease lapses."""
    flow = _flow(db_url, tmp_path, 4)
    printed: list[int] = []

    def report(result: object) -> None:
        if printed:
            raise BrokenPipeError(32, "Broken pipe")
        printed.append(1)

    with pytest.raises(BrokenPipeError):
        Dispatcher(flow.store, flow.ruleset, base_dir=tmp_path).drain(on_result=report)
    assert _states(flow) == [(1, "done", 1, None), (2, "done", 1, None)] + [
        (i, "pending", 0, None) for i in (3, 4)
    ]
