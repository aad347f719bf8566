"""Snapshot rows and projection checkpoints: the SQL, as functions over a store.

Portable SQL (``?`` placeholders, ``ON CONFLICT ... DO UPDATE``) for SQLite and PostgreSQL, over
the schema-v1 tables ``snapshots(projection, key, state, seq)`` and
``checkpoints(name, position, definition, updated_at)``. Writers call these inside
``store.write()`` so rows and checkpoint commit together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from evflow.core.structs import dataclass
from evflow.store.rows import CHECKPOINT_COLUMNS

if TYPE_CHECKING:
    from evflow.store.interface import Store

# SQLite's default limit of host parameters is 32766 (999 before 3.32); stay well under both.
IN_CHUNK = 500

_UPSERT = (
    "INSERT INTO snapshots (projection, key, state, seq) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (projection, key) DO UPDATE SET state = excluded.state, seq = excluded.seq"
)
_DELETE = "DELETE FROM snapshots WHERE projection = ? AND key = ?"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    name: str
    position: int  # seq of the last event folded in
    definition: str  # the projection's definition hash when it was folded
    updated_at: str


def checkpoint(store: Store, name: str) -> Checkpoint | None:
    row = store.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE name = ?", (name,)
    ).fetchone()
    store.end_read()
    return None if row is None else Checkpoint(row[0], int(row[1]), row[2], row[3])


def checkpoints(store: Store) -> dict[str, Checkpoint]:
    rows = store.execute(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY name").fetchall()
    store.end_read()
    return {r[0]: Checkpoint(r[0], int(r[1]), r[2], r[3]) for r in rows}


def save_checkpoint(store: Store, name: str, position: int, definition: str) -> None:
    """Record how far ``name`` has folded; call inside the write that stores its rows."""
    store.execute(
        "INSERT INTO checkpoints (name, position, definition, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
        " definition = excluded.definition, updated_at = excluded.updated_at",
        (name, position, definition, store.clock()),
    )


def has_rows(store: Store, projection: str) -> bool:
    """Whether ``projection`` has any stored row."""
    row = store.execute(
        "SELECT 1 FROM snapshots WHERE projection = ? LIMIT 1", (projection,)
    ).fetchone()
    store.end_read()
    return row is not None


def load_rows(store: Store, projection: str, keys: Iterable[str]) -> dict[str, tuple[str, int]]:
    """The stored ``(state JSON, seq)`` of those keys that have a row."""
    wanted = list(keys)
    found: dict[str, tuple[str, int]] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        for key, state, seq in store.execute(
            f"SELECT key, state, seq FROM snapshots WHERE projection = ? AND key IN ({marks})",
            (projection, *chunk),
        ).fetchall():
            found[key] = (state, int(seq))
    return found


def write_rows(
    store: Store,
    projection: str,
    upserts: Sequence[tuple[str, str, int]],
    deletes: Sequence[str],
) -> None:
    """Store ``(key, state JSON, seq)`` rows and remove ``deletes``; inside a write."""
    if upserts:
        store.executemany(_UPSERT, [(projection, k, s, q) for k, s, q in upserts])
    if deletes:
        store.executemany(_DELETE, [(projection, k) for k in deletes])


def clear(store: Store, projection: str) -> None:
    """Remove a projection's rows and checkpoint; inside a write."""
    store.execute("DELETE FROM snapshots WHERE projection = ?", (projection,))
    store.execute("DELETE FROM checkpoints WHERE name = ?", (projection,))


def swap(store: Store, aside: str, projection: str) -> None:
    """Replace ``projection`` by what was built under ``aside`` (rows and checkpoint); inside a
    write, so a reader sees the old snapshot or the new one, never a mix."""
    store.execute("DELETE FROM snapshots WHERE projection = ?", (projection,))
    store.execute("UPDATE snapshots SET projection = ? WHERE projection = ?", (projection, aside))
    store.execute("DELETE FROM checkpoints WHERE name = ?", (projection,))
    store.execute("UPDATE checkpoints SET name = ? WHERE name = ?", (projection, aside))


def rows(store: Store, projection: str, key: str | None = None) -> Iterator[tuple[str, str, int]]:
    """``(key, state JSON, seq)`` of a projection in key order (one key when given), streamed."""
    if key is not None:
        found = store.execute(
            "SELECT key, state, seq FROM snapshots WHERE projection = ? AND key = ?",
            (projection, key),
        ).fetchall()
        store.end_read()
        for k, state, seq in found:
            yield k, state, int(seq)
        return
    try:
        for k, state, seq in store.iterate(
            "SELECT key, state, seq FROM snapshots WHERE projection = ? ORDER BY key",
            (projection,),
        ):
            yield k, state, int(seq)
    finally:
        store.end_read()


# -- periodic copies (schema v3), for `query --as-of` ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a copy of a projection's snapshot is kept (see the schema's snapshot_marks)."""

    projection: str
    position: int
    definition: str
    max_time: str  # '' when no event of the folded types came before
    created_at: str  # when it was made: a copy made again at its position is another


MARK_COLUMNS = "projection, position, definition, max_time, created_at"


def nearest_mark(
    store: Store,
    projection: str,
    definition: str,
    *,
    seq: int,
    time: str | None = None,
) -> Mark | None:
    """The latest copy at or before ``seq`` (and, with ``time``, made of events none later than
    ``time``) folded with ``definition``; None when there is none."""
    sql = (
        f"SELECT {MARK_COLUMNS} FROM snapshot_marks"
        " WHERE projection = ? AND definition = ? AND position <= ?"
    )
    params: list[object] = [projection, definition, seq]
    if time is not None:
        sql += " AND max_time <= ?"
        params.append(time)
    return _mark(store, sql + " ORDER BY position DESC LIMIT 1", params)


def drop_copies(store: Store, projection: str, after: int, before: int, keep: int = -1) -> None:
    """Drop the copies of ``projection`` at positions in ``(after, before)`` but ``keep``: a
    rebuild replaces its predecessor's copies as it passes their positions."""
    for statement in (
        "DELETE FROM snapshot_history WHERE projection = ? AND position > ? AND position < ?"
        " AND position <> ?",
        "DELETE FROM snapshot_marks WHERE projection = ? AND position > ? AND position < ?"
        " AND position <> ?",
    ):
        store.execute(statement, (projection, after, before, keep))


def _mark(store: Store, sql: str, params: Sequence[object]) -> Mark | None:
    row = store.execute(sql, params).fetchone()
    store.end_read()
    return None if row is None else Mark(row[0], int(row[1]), row[2], row[3], row[4])


def mark_stands(store: Store, mark: Mark) -> bool:
    """Is this copy still kept as it was read? (A rebuild may drop or redo copies meanwhile.)"""
    found = _mark(
        store,
        f"SELECT {MARK_COLUMNS} FROM snapshot_marks WHERE projection = ? AND position = ?",
        [mark.projection, mark.position],
    )
    return found == mark


def max_time(store: Store, after: int, until: int, types: Sequence[str]) -> str:
    """The latest event ``time`` among the events in ``(after, until]`` of ``types`` (all types
    when empty); '' when there is none. A range of the primary key: cheap for a short range."""
    sql = "SELECT MAX(time) FROM events WHERE seq > ? AND seq <= ?"
    params: list[object] = [after, until]
    if types:
        sql += f" AND type IN ({', '.join('?' for _ in types)})"
        params.extend(types)
    row = store.execute(sql, params).fetchone()
    return row[0] if row is not None and row[0] is not None else ""


def keep_copy(
    store: Store, table: str, projection: str, position: int, definition: str, latest: str
) -> None:
    """Copy the rows of ``table`` (the projection, or its rebuild aside) as ``projection`` at
    ``position``; drop the copies of other definitions. Inside the write that saved the
    checkpoint at ``position``."""
    store.execute(
        "DELETE FROM snapshot_history WHERE projection = ? AND position IN"
        " (SELECT position FROM snapshot_marks WHERE projection = ? AND definition <> ?)",
        (projection, projection, definition),
    )
    store.execute(
        "DELETE FROM snapshot_marks WHERE projection = ? AND definition <> ?",
        (projection, definition),
    )
    store.execute(
        "DELETE FROM snapshot_history WHERE projection = ? AND position = ?",
        (projection, position),
    )
    store.execute(
        "INSERT INTO snapshot_history (projection, position, key, state, seq)"
        " SELECT ?, ?, key, state, seq FROM snapshots WHERE projection = ?",
        (projection, position, table),
    )
    store.execute(
        "INSERT INTO snapshot_marks (projection, position, definition, max_time, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (projection, position) DO UPDATE SET"
        " definition = excluded.definition, max_time = excluded.max_time,"
        " created_at = excluded.created_at",
        (projection, position, definition, latest, store.clock()),
    )


def copy_rows(store: Store, mark: Mark) -> Iterator[tuple[str, str, int]]:
    """``(key, state JSON, seq)`` of a kept copy, streamed."""
    try:
        for k, state, seq in store.iterate(
            "SELECT key, state, seq FROM snapshot_history WHERE projection = ? AND position = ?",
            (mark.projection, mark.position),
        ):
            yield k, state, int(seq)
    finally:
        store.end_read()
