"""What bridges keep in the evflow database: their positions and the database's identity.

A bridge's position (the last ``seq`` it handed over and had acknowledged) is a row of the
``checkpoints`` table named ``bridge:<kind>:<target>``, so a killed bridge resumes where it stopped.
The database's identity, which a bridge stamps on what it publishes so that it never takes its own
messages back in, is a random id stored once in ``evflow_meta`` under ``instance_id``.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evflow.store.interface import Store

CHECKPOINT_PREFIX = "bridge:"


def instance_id(store: Store) -> str:
    """This database's identity: a random id created on first use, then never changed."""
    row = store.execute("SELECT value FROM evflow_meta WHERE key = 'instance_id'").fetchone()
    store.end_read()
    if row is not None:
        return str(row[0])
    with store.write() as tx:
        # two bridges starting at once: the first insert wins, both then read the same id
        tx.execute(
            "INSERT INTO evflow_meta (key, value) VALUES ('instance_id', ?)"
            " ON CONFLICT (key) DO NOTHING",
            (uuid.uuid4().hex,),
        )
        row = tx.execute("SELECT value FROM evflow_meta WHERE key = 'instance_id'").fetchone()
    return str(row[0])


def read_position(store: Store, name: str) -> int:
    """The checkpoint ``name``'s position (0 when the bridge never ran)."""
    row = store.execute("SELECT position FROM checkpoints WHERE name = ?", (name,)).fetchone()
    store.end_read()
    return int(row[0]) if row is not None else 0


def save_position(
    store: Store, name: str, position: int, definition: dict[str, Any] | None = None
) -> None:
    """Record ``position`` for ``name``; never moves a checkpoint backwards."""
    now = store.clock()
    text = json.dumps(definition or {}, sort_keys=True)
    with store.write() as tx:
        tx.execute(
            "INSERT INTO checkpoints (name, position, definition, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET"
            " position = CASE WHEN excluded.position > checkpoints.position"
            " THEN excluded.position ELSE checkpoints.position END,"
            " definition = excluded.definition, updated_at = excluded.updated_at",
            (name, position, text, now),
        )


def bridge_stats(store: Store) -> dict[str, dict[str, Any]]:
    """Every bridge checkpoint: its position, the log's last seq, and the lag between them."""
    rows = store.execute(
        "SELECT name, position, updated_at FROM checkpoints WHERE name LIKE ? ORDER BY name",
        (CHECKPOINT_PREFIX + "%",),
    ).fetchall()
    store.end_read()
    if not rows:
        return {}
    last = store.last_seq()
    return {
        str(name): {
            "position": int(position),
            "last_seq": last,
            "lag": max(last - int(position), 0),
            "updated_at": updated_at,
        }
        for name, position, updated_at in rows
    }
