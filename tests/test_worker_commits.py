"""The worker (issue 16): the due query reads index ranges, in the same order as before; one
transaction records a delivery's outcome and claims the next; a stop gives that claim back."""

from __future__ import annotations

import threading
from pathlib import Path

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


def test_a_stop_gives_back_the_claim_made_for_the_next(db_url: str, tmp_path: Path) -> None:
    flow = _flow(db_url, tmp_path, 5)
    stop = threading.Event()
    dispatcher = Dispatcher(flow.store, flow.ruleset, base_dir=tmp_path, stop=stop)
    dispatcher.drain(on_result=lambda r: stop.set())
    rows = flow.store.execute(
        "SELECT id, status, attempts, lease_owner FROM deliveries ORDER BY id"
    ).fetchall()
    assert [tuple(r) for r in rows] == [(1, "done", 1, None)] + [
        (i, "pending", 0, None) for i in range(2, 6)
    ]
