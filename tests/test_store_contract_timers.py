"""The store contract for timers (part of the contract suite): every backend passes these
(SQLite; PostgreSQL with EVFLOW_TEST_PG)."""

from __future__ import annotations

from typing import Any

from evflow.core.events import normalize, parse_time
from evflow.core.rules import RuleSet
from evflow.services.timers import fire_due
from evflow.store import open_store
from evflow.store import timers as timer_rows
from evflow.store.sql import SqlStore


def cause(store: SqlStore, n: int) -> tuple[int, str]:
    event = normalize({"type": "a", "id": f"c{n}", "source": "s", "time": "2026-01-01T00:00:00Z"})
    return store.append(event).seq, event["id"]


def add(store: SqlStore, n: int, due: str, key: str | None = "k", rule: str = "r") -> int | None:
    """A pending run timer of ``rule`` set by cause ``c{n}`` (appended when new)."""
    known = store.get(f"c{n}")
    seq, cid = cause(store, n) if known is None else (known["seq"], known["id"])
    with store.write() as tx:
        return timer_rows.add(
            tx, rule=rule, action=0, kind="run", due=due, key=key, cause_seq=seq, cause_id=cid,
            body=None,
        )  # fmt: skip


def t(day: int) -> str:
    return f"2026-01-{day:02d}T00:00:00.000000Z"


def test_a_timer_is_recorded_once_per_cause_rule_and_action(db_url: str) -> None:
    store = open_store(db_url)
    first = add(store, 1, t(5))
    assert first is not None
    assert add(store, 1, t(6)) is None  # the same cause routed again
    [timer] = list(timer_rows.select(store))
    assert (timer.id, timer.status, timer.due, timer.key, timer.kind) == (
        first, "pending", t(5), "k", "run"
    )  # fmt: skip
    assert store.stats().timers == {"pending": 1, "fired": 0, "cancelled": 0}
    store.close()


def test_due_timers_come_in_due_order_a_page_at_a_time(db_url: str) -> None:
    store = open_store(db_url)
    ids = {day: add(store, n, t(day)) for n, day in enumerate([9, 3, 7, 3, 1, 12])}
    with store.write() as tx:
        page = timer_rows.due(tx, t(9), None, 3)
        assert [x.due for x in page] == [t(1), t(3), t(3)]
        nxt = timer_rows.due(tx, t(9), (page[-1].due, page[-1].id), 3)
        assert [x.due for x in nxt] == [t(7), t(9)]  # the 12th is not due yet
        timer_rows.mark_fired(tx, [(None, None, nxt[0].id)])
        assert [x.id for x in timer_rows.due(tx, t(9), None, 10)] == [
            ids[1], page[1].id, page[2].id, ids[9]
        ]  # fmt: skip
    assert timer_rows.any_due(store, t(9)) and not timer_rows.any_due(store, "2025-12-31")
    store.close()


def test_cancelling_by_key_spares_other_keys_rules_and_timers_already_due(db_url: str) -> None:
    store = open_store(db_url)
    mine = add(store, 1, t(10), key="k1")
    add(store, 2, t(10), key="k2")
    add(store, 3, t(10), key="k1", rule="other")
    early = add(store, 4, t(2), key="k1")
    seq, _ = cause(store, 99)
    with store.write() as tx:
        cancelled = timer_rows.cancel_by_key(tx, "r", 0, "k1", t(5), seq)
    assert [c.id for c in cancelled] == [mine]
    by_id = {x.id: x for x in timer_rows.select(store)}
    assert by_id[mine].status == "cancelled" and by_id[mine].cancelled_by == seq
    assert by_id[early].status == "pending"  # due before the cancelling event happened
    assert [x.id for x in timer_rows.select(store, cancelled_by=seq)] == [mine]
    assert len(list(timer_rows.select(store, status="pending"))) == 3
    store.close()


def test_cancelling_by_hand_says_why_not(db_url: str) -> None:
    store = open_store(db_url)
    pending, fired = add(store, 1, t(3)), add(store, 2, t(3))
    assert pending is not None and fired is not None
    with store.write() as tx:
        timer_rows.mark_fired(tx, [(None, None, fired)])
    with store.write() as tx:
        outcome = timer_rows.cancel_ids(tx, [pending, fired, 999])
    assert outcome == {pending: None, fired: "fired", 999: "unknown"}
    assert store.stats().timers == {"pending": 0, "fired": 1, "cancelled": 1}
    store.close()


def test_a_tick_with_nothing_due_costs_one_indexed_query(db_url: str) -> None:
    store = open_store(db_url)
    for n in range(20):
        add(store, n, t(20))
    statements: list[str] = []
    run = store.raw_execute

    def counting(sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return run(sql, params)

    store.raw_execute = counting  # type: ignore[method-assign]
    report = fire_due(store, RuleSet(), parse_time(t(19)))
    store.raw_execute = run  # type: ignore[method-assign]
    assert report.fired == 0
    assert statements == [timer_rows.DUE_CHECK]
    assert "timers_due" in _plan(store, timer_rows.DUE_CHECK, (t(19),))
    store.close()


def test_cancelling_by_key_looks_the_key_up_in_its_index(db_url: str) -> None:
    """Not a range over every pending timer due after the cancelling event (SQLite's choice
    without statistics: 40 ms per cancelling event with 100,000 pending timers)."""
    store = open_store(db_url)
    for n in range(20):
        add(store, n, t(20), key=f"k{n}")
    params = (1, t(1), "r", 0, "k3", t(5))
    plan = _plan(store, timer_rows.CANCEL_BY_KEY, params)
    assert "timers_key" in plan and "timers_due" not in plan, plan
    assert [x.status for x in timer_rows.select(store, key="k3")] == ["pending"]  # only planned
    store.close()


def _plan(store: SqlStore, sql: str, params: tuple[Any, ...]) -> str:
    """The query plan of ``sql``, as text (sequential scans ruled out on PostgreSQL, whose planner
    prefers them on tables this small)."""
    if type(store).__name__ == "SqliteStore":
        rows = store.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        return " ".join(str(r[-1]) for r in rows)
    with store.write() as tx:
        tx.execute("SET LOCAL enable_seqscan = off")
        rows = tx.execute(f"EXPLAIN {sql}", params).fetchall()
    return " ".join(str(r[0]) for r in rows)
