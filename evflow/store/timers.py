"""Timers (``timers``): recorded with their cause, cancelled by key, fired in due order.

States: ``pending`` -> ``fired`` (its event appended, or its delivery created, in the transaction
that marks it) | ``cancelled`` (by an event with its key that happened before it was due, or by
hand). Recording and cancelling run inside the appending transaction without writing its buffered
appends first: they refer to events by position only. A tick reads due timers under the store's
write lock, a batch at a time through the ``timers_due`` index, so two tickers never fire one twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from evflow.core.timers import TimerRecord

if TYPE_CHECKING:
    from evflow.store.interface import Store, WriteTransaction

COLUMNS = (
    "id, rule, action, kind, status, due, key, cause_seq, cause_id, event_seq, delivery_id,"
    " cancelled_by"
)


def _record(row: Sequence[Any], body: str | None = None) -> TimerRecord:
    return TimerRecord(
        int(row[0]), row[1], int(row[2]), row[3], row[4], row[5], row[6], int(row[7]), row[8],
        None if row[9] is None else int(row[9]),
        None if row[10] is None else int(row[10]),
        None if row[11] is None else int(row[11]),
        body,
    )  # fmt: skip


def add(
    tx: WriteTransaction,
    *,
    rule: str,
    action: int,
    kind: str,
    due: str,
    key: str | None,
    cause_seq: int,
    cause_id: str,
    body: str | None,
) -> int | None:
    """Record a pending timer; None when this cause already has it (routed twice)."""
    now = tx.now()
    return tx.insert_id(
        "INSERT INTO timers (rule, action, kind, status, due, key, cause_seq, cause_id, body,"
        " created_at, updated_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (cause_seq, rule, action) DO NOTHING",
        (rule, action, kind, due, key, cause_seq, cause_id, body, now, now),
    )


# ``due || ''`` keeps SQLite (without statistics) from reading the range of every pending timer due
# after the event through ``timers_due`` instead of looking the key up in ``timers_key``: with
# 100,000 pending timers, 40 ms per cancelling event instead of 0.01 ms
CANCEL_BY_KEY = (
    "UPDATE timers SET status = 'cancelled', cancelled_by = ?, updated_at = ?"
    " WHERE rule = ? AND action = ? AND key = ? AND status = 'pending' AND due || '' > ?"
    f" RETURNING {COLUMNS}"
)


def cancel_by_key(
    tx: WriteTransaction, rule: str, action: int, key: str, before: str, by_seq: int
) -> list[TimerRecord]:
    """Cancel ``rule``'s pending timers of ``action`` with ``key`` that are due after ``before``
    (the cancelling event's time); returns them."""
    rows = tx.raw_execute(CANCEL_BY_KEY, (by_seq, tx.now(), rule, action, key, before)).fetchall()
    return sorted((_record(r) for r in rows), key=lambda t: t.id)


DUE_CHECK = "SELECT id FROM timers WHERE status = 'pending' AND due <= ? LIMIT 1"


def any_due(store: Store, now: str) -> bool:
    """Whether some timer is due at ``now``: one indexed read, without the write lock (what a
    worker pays every turn when nothing is due)."""
    try:
        return store.execute(DUE_CHECK, (now,)).fetchone() is not None
    finally:
        store.end_read()


def due(
    tx: WriteTransaction, now: str, after: tuple[str, int] | None, limit: int
) -> list[TimerRecord]:
    """Pending timers due at or before ``now``, in due order, after the ``(due, id)`` position
    ``after`` (a tick pages through them; one left pending by a failure is not read again)."""
    where = "status = 'pending' AND due <= ?"
    params: list[Any] = [now]
    if after is not None:
        # "due >= ?" bounds the index range; the rest only skips that one due time's first ids
        where += " AND due >= ? AND (due > ? OR id > ?)"
        params += [after[0], after[0], after[1]]
    rows = tx.execute(
        f"SELECT {COLUMNS}, body FROM timers WHERE {where} ORDER BY due, id LIMIT {int(limit)}",
        params,
    ).fetchall()
    return [_record(r[:-1], r[-1]) for r in rows]


def mark_fired(tx: WriteTransaction, marks: Sequence[tuple[int | None, int | None, int]]) -> None:
    """Mark timers fired: ``(event_seq, delivery_id, timer id)`` each, in one round trip."""
    if marks:
        now = tx.now()
        tx.executemany(
            "UPDATE timers SET status = 'fired', event_seq = ?, delivery_id = ?, updated_at = ?"
            " WHERE id = ? AND status = 'pending'",
            [(seq, delivery, now, timer_id) for seq, delivery, timer_id in marks],
        )


def cancel_ids(tx: WriteTransaction, ids: Sequence[int]) -> dict[int, str | None]:
    """Cancel these timers by hand: each id -> None when cancelled, else its status (or
    ``unknown``)."""
    out: dict[int, str | None] = {}
    for timer_id in ids:
        row = tx.execute("SELECT status FROM timers WHERE id = ?", (timer_id,)).fetchone()
        if row is None:
            out[timer_id] = "unknown"
        elif row[0] != "pending":
            out[timer_id] = str(row[0])
        else:
            tx.execute(
                "UPDATE timers SET status = 'cancelled', updated_at = ? WHERE id = ?",
                (tx.now(), timer_id),
            )
            out[timer_id] = None
    return out


def select(
    store: Store,
    *,
    status: str | None = None,
    rule: str | None = None,
    key: str | None = None,
    cause_seq: int | None = None,
    cancelled_by: int | None = None,
    limit: int | None = None,
) -> Iterator[TimerRecord]:
    """Timers in id order, streamed; every argument narrows."""
    where = ["1 = 1"]
    params: list[Any] = []
    for column, value in (
        ("status", status), ("rule", rule), ("key", key), ("cause_seq", cause_seq),
        ("cancelled_by", cancelled_by),
    ):  # fmt: skip
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT {COLUMNS} FROM timers WHERE {' AND '.join(where)} ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    try:
        for row in store.iterate(sql, params):
            yield _record(row)
    finally:
        store.end_read()
