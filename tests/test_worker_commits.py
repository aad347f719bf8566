"""The worker (issue 16): the due query reads index ranges, in the same order as before; one
transaction records a delivery's outcome and claims the next, whose program starts before that
transaction commits; a stop gives a claim back unless its program has started."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from evflow.app import Evflow
from evflow.rulefiles.loader import load_rules
from evflow.services import actions
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


def test_a_stop_while_an_action_runs_gives_back_the_claim_made_for_the_next(
    db_url: str, tmp_path: Path
) -> None:
    flow = _flow(db_url, tmp_path, 5)
    stop = threading.Event()
    dispatcher = Dispatcher(flow.store, flow.ruleset, base_dir=tmp_path, stop=stop)
    # as a signal handler would, while the first program runs: the transaction that records it
    # claims the second, starts nothing, and drain gives that claim back
    dispatcher.on_start = lambda delivery_id: stop.set() if delivery_id is not None else None
    results = dispatcher.drain()
    assert [r.id for r in results] == [1]
    assert _states(flow) == [(1, "done", 1, None)] + [(i, "pending", 0, None) for i in range(2, 6)]


def test_a_stop_after_the_next_program_started_lets_it_finish(db_url: str, tmp_path: Path) -> None:
    flow = _flow(db_url, tmp_path, 5)
    stop = threading.Event()
    dispatcher = Dispatcher(flow.store, flow.ruleset, base_dir=tmp_path, stop=stop)
    # the first result is reported once the second program has started (see the next test):
    # that one is in hand now, so it finishes and is recorded; the third is given back
    results = dispatcher.drain(on_result=lambda r: stop.set())
    assert [r.id for r in results] == [1, 2]
    assert _states(flow) == [(1, "done", 1, None), (2, "done", 1, None)] + [
        (i, "pending", 0, None) for i in range(3, 6)
    ]


def test_the_next_program_starts_before_the_commit_that_claims_it(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit (a disk write) overlaps the next program's run instead of preceding it."""
    flow = _flow(db_url, tmp_path, 3)
    steps: list[str] = []
    start, commit = actions.start, flow.store.commit

    def starting(action: Any, event: Any, delivery: Any, base_dir: Path) -> Any:
        steps.append(f"start {delivery.id}")
        return start(action, event, delivery, base_dir)

    def committing() -> None:
        steps.append("commit")
        commit()

    monkeypatch.setattr(actions, "start", starting)
    monkeypatch.setattr(flow.store, "commit", committing)
    results = Dispatcher(flow.store, flow.ruleset, base_dir=tmp_path).drain()
    assert [r.status for r in results] == ["done"] * 3
    # claim 1 and finish 3 are statements of their own; in between, each transaction that
    # records one delivery and claims the next starts that next program before it commits
    assert steps == ["start 1", "start 2", "commit", "start 3", "commit"]
