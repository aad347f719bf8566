"""Schedule ticks: how far each schedule's occurrences have been handled (``schedule_ticks``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evflow.store.interface import Store, WriteTransaction


def last_tick(tx: WriteTransaction, name: str) -> str | None:
    """The end of the span already handled for schedule ``name`` (canonical UTC text)."""
    row = tx.execute("SELECT last_time FROM schedule_ticks WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def record_tick(tx: WriteTransaction, name: str, at: str) -> None:
    """Move schedule ``name``'s handled span to ``at``; inside the write that emits its events."""
    tx.execute(
        "INSERT INTO schedule_ticks (name, last_time, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET last_time = excluded.last_time,"
        " updated_at = excluded.updated_at",
        (name, at, tx.now()),
    )


def all_ticks(store: Store) -> dict[str, str]:
    """Each known schedule's last tick (canonical UTC text)."""
    try:
        rows = store.execute("SELECT name, last_time FROM schedule_ticks").fetchall()
    finally:
        store.end_read()
    return {str(name): str(text) for name, text in rows}
