"""The delivery (outbox) statements, as functions over a :class:`~evflow.store.interface.Store`.

Portable SQL with ``?`` placeholders, so SQLite and PostgreSQL run the same text. Every state
change is one statement in autocommit mode (or inside a write the caller opened): a claim is an
``UPDATE ... WHERE`` whose row count says whether this worker won it, which is atomic on both
backends (PostgreSQL re-checks the ``WHERE`` after waiting for a concurrent updater's row lock).

States: ``pending`` -> ``running`` (claimed, with a lease) -> ``done`` | ``failed`` (due again at
``next_attempt_at``) | ``dead``. A ``running`` row whose lease has expired is claimable again: its
worker died or hung.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evflow.core.records import Delivery
from evflow.store.rows import DELIVERY_COLUMNS, delivery_from_row

if TYPE_CHECKING:
    from evflow.store.interface import Store, WriteTransaction

_DUE = (  # the claim's test; due() reads the same rows through the indexes
    "((status IN ('pending', 'failed') AND next_attempt_at <= ?)"
    " OR (status = 'running' AND lease_until < ?))"
)
# errors are kept whole enough to diagnose, small enough for a table column
MAX_ERROR = 2000


def due(store: Store, now: str, limit: int = 100) -> list[Delivery]:
    """Deliveries claimable at ``now``: pending or failed and due, or with a lapsed lease; the
    ``limit`` first by ``(next_attempt_at, id)``.

    Three queries, each a range of an index (``deliveries_waiting`` for each waiting status,
    ``deliveries_leases`` for lapsed leases) that stops after ``limit`` rows, merged here: one
    query with an ``OR`` across statuses sorted every due row for each batch, so a worker slowed
    down as its backlog grew (issue 16)."""
    n = int(limit)
    rows: list[Any] = []
    for status in ("pending", "failed"):
        rows += store.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = ? AND next_attempt_at <= ?"
            f" ORDER BY status, next_attempt_at, id LIMIT {n}",
            (status, now),
        ).fetchall()
    rows += store.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = 'running' AND lease_until < ?"
        f" ORDER BY status, lease_until LIMIT {n}",
        (now,),
    ).fetchall()
    store.end_read()
    found = [delivery_from_row(row) for row in rows]
    # a due row has a next_attempt_at (set when it is created, failed or requeued)
    found.sort(key=lambda d: (d.next_attempt_at or "", d.id))
    return found[:n]


def get(store: Store, delivery_id: int) -> Delivery | None:
    row = store.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
    ).fetchone()
    store.end_read()
    return None if row is None else delivery_from_row(row)


def claim(store: Store, delivery_id: int, worker: str, now: str, lease_until: str) -> bool:
    """Take a due delivery for ``worker`` until ``lease_until``; False if it is not due or taken.

    The attempt is counted here, not when it ends: a program that kills its worker every time
    still runs out of attempts instead of being retried for ever.
    """
    cur = store.execute(
        "UPDATE deliveries SET status = 'running', lease_owner = ?, lease_until = ?,"
        f" attempts = attempts + 1, updated_at = ? WHERE id = ? AND {_DUE}",
        (worker, lease_until, now, delivery_id, now, now),
    )
    return int(cur.rowcount) == 1


def release(store: Store, delivery_id: int, worker: str) -> bool:
    """Give back a claim this worker has not started on: pending again, the attempt uncounted."""
    cur = store.execute(
        "UPDATE deliveries SET status = 'pending', attempts = attempts - 1, lease_owner = NULL,"
        " lease_until = NULL WHERE id = ? AND status = 'running' AND lease_owner = ?",
        (delivery_id, worker),
    )
    return int(cur.rowcount) == 1


def give_up(store: Store, delivery_id: int, now: str, error: str) -> bool:
    """A delivery whose lease lapsed after its last allowed attempt (its worker died in the
    action): dead, without another attempt. False when it is not in that state any more."""
    cur = store.execute(
        "UPDATE deliveries SET status = 'dead', last_error = ?, next_attempt_at = NULL,"
        " updated_at = ?, lease_owner = NULL, lease_until = NULL"
        " WHERE id = ? AND status = 'running' AND lease_until <= ?",
        (_clip(error), now, delivery_id, now),
    )
    return int(cur.rowcount) == 1


def finish(
    store: Store | WriteTransaction,
    delivery_id: int,
    worker: str,
    now: str,
    status: str,
    error: str | None = None,
    next_attempt_at: str | None = None,
) -> bool:
    """Record the outcome of this worker's claim; False when the claim was lost (lease lapsed)."""
    cur = store.execute(
        "UPDATE deliveries SET status = ?, last_error = ?, next_attempt_at = ?, updated_at = ?,"
        " lease_owner = NULL, lease_until = NULL"
        " WHERE id = ? AND status = 'running' AND lease_owner = ?",
        (status, _clip(error), next_attempt_at, now, delivery_id, worker),
    )
    return int(cur.rowcount) == 1


def requeue(store: Store | WriteTransaction, ids: Sequence[int], now: str) -> int:
    """Back to pending, due now, with a fresh set of attempts (failed, dead or pending ones;
    done and running ones are left alone)."""
    if not ids:
        return 0
    marks = ", ".join("?" for _ in ids)
    cur = store.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?,"
        " updated_at = ?, lease_owner = NULL, lease_until = NULL"
        f" WHERE id IN ({marks}) AND status IN ('failed', 'dead', 'pending')",
        (now, now, *ids),
    )
    return int(cur.rowcount)


def dead_ids(store: Store, rule: str | None = None) -> list[int]:
    sql = "SELECT id FROM deliveries WHERE status = 'dead'"
    params: list[Any] = []
    if rule is not None:
        sql += " AND rule = ?"
        params.append(rule)
    rows = store.execute(sql + " ORDER BY id", params).fetchall()
    store.end_read()
    return [int(r[0]) for r in rows]


def for_events(store: Store, rule: str, seqs: Sequence[int]) -> dict[tuple[int, int], Delivery]:
    """Existing deliveries of ``rule`` for these events, by ``(event_seq, action)``."""
    out: dict[tuple[int, int], Delivery] = {}
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = store.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE rule = ? AND event_seq IN ({marks})",
            (rule, *chunk),
        ).fetchall()
        for row in rows:
            d = delivery_from_row(row)
            out[(d.event_seq, d.action)] = d
    store.end_read()
    return out


def _clip(error: str | None) -> str | None:
    if error is None:
        return None
    # a message may quote event data: PostgreSQL's text cannot hold NUL
    error = error.replace("\x00", "\\0")
    if len(error) <= MAX_ERROR:
        return error
    return "…" + error[-(MAX_ERROR - 1) :]
