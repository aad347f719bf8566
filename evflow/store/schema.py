"""The tables of the log, once for every backend; each backend fills in its types.

Statements are idempotent, so a migration runs them all and records the new version.
"""

from __future__ import annotations

SCHEMA_VERSION = 5  # 2: rule_errors; 3: timers; 4: snapshot copies, due-delivery indexes;
# 5: no deliveries_due (deliveries_waiting begins with its columns)

# The tables, once for every backend; each fills in its types. Statements are idempotent, so a
# migration runs them all and records the new version.
SCHEMA_TEMPLATE = [
    "CREATE TABLE IF NOT EXISTS evflow_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS events (
        seq {bigint} PRIMARY KEY,
        id TEXT NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        subject TEXT,
        time TEXT NOT NULL,
        recordedtime TEXT NOT NULL,
        causationid TEXT,
        correlationid TEXT,
        rule TEXT,
        body TEXT NOT NULL,
        UNIQUE (id, source)  -- also serves lookups by id alone (evflow show ID)
    )""",
    # PostgreSQL: COLLATE "C" lets LIKE 'order.%' use the index and compares bytes, as SQLite
    "CREATE INDEX IF NOT EXISTS events_type ON events (type{binary}, seq)",
    "CREATE INDEX IF NOT EXISTS events_subject ON events (subject, seq)",
    "CREATE INDEX IF NOT EXISTS events_time ON events (time)",
    "CREATE INDEX IF NOT EXISTS events_causation ON events (causationid)",
    """CREATE TABLE IF NOT EXISTS deliveries (
        id {serial},
        event_seq {bigint} NOT NULL,
        event_id TEXT NOT NULL,
        rule TEXT NOT NULL,
        action INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        lease_owner TEXT,
        lease_until TEXT,
        UNIQUE (event_seq, rule, action)
    )""",
    "CREATE INDEX IF NOT EXISTS deliveries_rule ON deliveries (rule, status)",
    """CREATE TABLE IF NOT EXISTS snapshots (
        projection TEXT NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        seq {bigint} NOT NULL,
        PRIMARY KEY (projection, key)
    )""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        name TEXT PRIMARY KEY,
        position {bigint} NOT NULL,
        definition TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS schedule_ticks (
        name TEXT PRIMARY KEY,
        last_time TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    # v2: a rule filter that failed on an event (it did not match), for `evflow show`
    """CREATE TABLE IF NOT EXISTS rule_errors (
        event_seq {bigint} NOT NULL,
        rule TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (event_seq, rule)
    )""",
    # v3: timed actions (after/at), recorded with their cause, fired by ticks, cancelled by key
    """CREATE TABLE IF NOT EXISTS timers (
        id {serial},
        rule TEXT NOT NULL,
        action INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        due TEXT NOT NULL,
        key TEXT,
        cause_seq {bigint} NOT NULL,
        cause_id TEXT NOT NULL,
        event_seq {bigint},
        delivery_id {bigint},
        cancelled_by {bigint},
        body TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (cause_seq, rule, action)
    )""",
    # a tick's query (pending and due, in due order) and a cancellation's (pending, by key)
    "CREATE INDEX IF NOT EXISTS timers_due ON timers (status, due, id)",
    "CREATE INDEX IF NOT EXISTS timers_key ON timers (rule, action, key, status)",
    "CREATE INDEX IF NOT EXISTS timers_cancelled_by ON timers (cancelled_by)",
    # v4: periodic copies of each projection's snapshot, so that `query --as-of` folds from the
    # nearest one instead of from seq 1. A mark says where a copy is: the checkpoint position,
    # the definition it was folded with, and the latest event time among the events of the
    # types it folds up to there (a copy serves --as-of TIME only when that is at or before it).
    """CREATE TABLE IF NOT EXISTS snapshot_marks (
        projection TEXT NOT NULL,
        position {bigint} NOT NULL,
        definition TEXT NOT NULL,
        max_time TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (projection, position)
    )""",
    """CREATE TABLE IF NOT EXISTS snapshot_history (
        projection TEXT NOT NULL,
        position {bigint} NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        seq {bigint} NOT NULL,
        PRIMARY KEY (projection, position, key)
    )""",
    # v4: the worker's due query reads these as index range scans, whatever the backlog
    "CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries (status, next_attempt_at, id)",
    "CREATE INDEX IF NOT EXISTS deliveries_leases ON deliveries (status, lease_until)",
    # v5: deliveries_waiting serves every query deliveries_due (status, next_attempt_at) served,
    # and each index is written on every delivery recorded and every status it goes through
    "DROP INDEX IF EXISTS deliveries_due",
]


def schema_statements(*, bigint: str, serial: str, binary: str) -> list[str]:
    """The DDL in a backend's types: ``bigint`` for positions, ``serial`` for a generated key
    column, ``binary`` the collation suffix that makes text compare byte-wise."""
    return [s.format(bigint=bigint, serial=serial, binary=binary) for s in SCHEMA_TEMPLATE]
