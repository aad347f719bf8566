"""The queries of the log, shared by every SQL backend.

Statements are written with ``?`` placeholders; a backend whose driver wants ``%s`` sets
``paramstyle_format = True`` and they are rewritten once. Backends override the few hooks at the
top of :class:`SqlStore`: connecting, beginning a write (how appends are serialized), the store's
clock, and reading large results without loading them whole.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from evflow.core.events import Event
from evflow.core.records import DELIVERY_STATUSES, Appended, Delivery, EventFilter, Stats
from evflow.errors import InvalidEvent
from evflow.store.rows import (
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    INSERT_EVENT,
    delivery_from_row,
    encode_event,
    event_from_row,
)
from evflow.store.schema import SCHEMA_VERSION


@lru_cache(maxsize=512)
def _to_format(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _glob_to_like(pattern: str) -> str | None:
    """A type glob as a LIKE pattern, or None when it needs more than ``*`` (then: Python)."""
    if any(c in pattern for c in "?[]%_"):
        return None
    return pattern.replace("*", "%")


def _text(message: str | None) -> str | None:
    """A message for a text column: it may quote event data, and PostgreSQL's text cannot hold
    NUL; kept to a few thousand characters."""
    if message is None:
        return None
    message = message.replace("\x00", "\\0")
    return message if len(message) <= 4000 else message[:3999] + "…"


class Transaction:
    """A write transaction: appends and outbox rows that commit together or not at all.

    Appends are buffered and written in batches (``executemany``): ``seq`` is counted here,
    which is safe because the transaction holds the append lock. Any other statement run
    through the store first writes the buffer, so every query sees every append.
    """

    BATCH = 1000

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._now: str | None = None
        self._next_seq: int | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._buffered: dict[tuple[str, str], int] = {}  # (source, id) -> seq, not yet written
        self._absent: set[tuple[str, str]] = set()  # (source, id) known not to be in the log

    def now(self) -> str:
        """The store's clock, read once per transaction: what it records commits together."""
        if self._now is None:
            self._now = self.store.clock()
        return self._now

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.store.execute(sql, params)

    def append(
        self, event: Event, recordedtime: str | None = None, body: str | None = None
    ) -> Appended:
        """Append one normalized event; a known ``source``+``id`` appends nothing.

        ``recordedtime``: keep this one (history imported from another log) instead of the
        store's clock. ``body``: the event's JSON text (:func:`encode_event`'s), if known."""
        store = self.store
        identity = (event["source"], event["id"])
        recorded = recordedtime or self.now()
        known = self._buffered.get(identity)
        if known is not None:
            return Appended(known, recorded, True)
        if identity in self._absent:
            self._absent.discard(identity)  # once appended, a second one must be looked up
        else:
            existing = store.raw_execute(
                "SELECT seq, recordedtime FROM events WHERE id = ? AND source = ?",
                (event["id"], event["source"]),
            ).fetchone()
            if existing is not None:
                return Appended(int(existing[0]), existing[1], True)
        if self._next_seq is None:
            row = store.raw_execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            self._next_seq = int(row[0]) + 1
        try:
            body = encode_event(event) if body is None else body
        except ValueError:  # NaN or Infinity: not JSON, no other reader could take it back
            raise InvalidEvent("data", "holds NaN or Infinity, which JSON cannot hold") from None
        seq = self._next_seq
        self._next_seq += 1
        self._rows.append(
            (
                seq,
                event["id"],
                event["source"],
                event["type"],
                event.get("subject"),
                event["time"],
                recorded,
                event.get("causationid"),
                event.get("correlationid"),
                event.get("evflowrule"),
                body,
            )
        )
        self._buffered[identity] = seq
        if len(self._rows) >= self.BATCH:
            self.flush()
        return Appended(seq, recorded, False)

    def recorded(self, seq: int) -> Event:
        """The event recorded at ``seq`` (appended earlier, or in this transaction)."""
        row = self.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?", (seq,)).fetchone()
        return event_from_row(*row)

    def known_absent(self, identities: Sequence[tuple[str, str]]) -> None:
        """Look up many ``(source, id)`` at once (an import's next lines): those the log does
        not hold are appended without a lookup each."""
        self._absent.clear()
        wanted = set(identities)
        ids = sorted({i for _, i in wanted})
        found: set[tuple[str, str]] = set()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self.execute(
                f"SELECT source, id FROM events WHERE id IN ({', '.join('?' for _ in part)})", part
            ).fetchall()
            found.update((r[0], r[1]) for r in rows)
        self._absent = wanted - found

    def savepoint(self) -> None:
        self.execute("SAVEPOINT evflow_part")

    def release(self) -> None:
        self.execute("RELEASE SAVEPOINT evflow_part")

    def rollback_to_savepoint(self) -> None:
        """Undo what was appended since :meth:`savepoint`, positions included."""
        self.execute("ROLLBACK TO SAVEPOINT evflow_part")
        self._next_seq = None  # recount: the undone appends must not leave a gap

    def flush(self) -> None:
        """Write the buffered appends."""
        if self._rows:
            rows, self._rows = self._rows, []
            self._buffered.clear()
            self.store.raw_executemany(INSERT_EVENT, rows)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.store.executemany(sql, rows)

    def raw_execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a statement that does not read the ``events`` table without writing the buffered
        appends first (rows that refer to their event by position, which is already decided)."""
        return self.store.raw_execute(sql, params)

    def add_rule_error(self, event_seq: int, rule: str, message: str) -> None:
        """Keep why a rule failed on an event (its filter, or an emit action); the first only."""
        self.store.raw_execute(
            "INSERT INTO rule_errors (event_seq, rule, message) VALUES (?, ?, ?)"
            " ON CONFLICT (event_seq, rule) DO NOTHING",
            (event_seq, rule, _text(message)),
        )

    def add_delivery(
        self,
        event_seq: int,
        event_id: str,
        rule: str,
        action: int,
        kind: str,
        failed: str | None = None,
    ) -> int:
        """Record that an action is owed (status pending); returns the delivery id.

        ``failed``: the action already failed in the append (an ``emit`` whose template failed):
        recorded ``dead`` after one attempt with this error, for ``evflow retry`` to bring back.
        Run without writing the buffered appends first: the row refers to its event by position,
        which is already decided.
        """
        now = self.now()
        status, attempts, due = ("pending", 0, now) if failed is None else ("dead", 1, None)
        row = self.store.raw_execute(
            "INSERT INTO deliveries (event_seq, event_id, rule, action, kind, status, attempts,"
            " next_attempt_at, last_error, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_seq, rule, action) DO NOTHING RETURNING id",
            (event_seq, event_id, rule, action, kind, status, attempts, due, _text(failed), now,
             now),  # fmt: skip
        ).fetchone()
        if row is not None:
            return int(row[0])
        row = self.store.raw_execute(
            "SELECT id FROM deliveries WHERE event_seq = ? AND rule = ? AND action = ?",
            (event_seq, rule, action),
        ).fetchone()
        return int(row[0])


class SqlStore:
    """The log over a DB-API connection; subclasses supply the dialect."""

    paramstyle_format = False
    display_url = ""
    tables_url = ""  # where SQL read-model tables go by default (password and schema kept)

    # -- hooks for backends -------------------------------------------------------------------

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._tx: Transaction | None = None  # the write in progress, whose appends may be buffered

    def prepare_bulk_write(self) -> None:
        """About to append many events in one transaction (an import): tune for it."""

    def begin_write(self) -> None:
        """Start a transaction that holds the append lock until commit."""
        raise NotImplementedError

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def clock(self) -> str:
        """The store's clock, as canonical UTC text."""
        raise NotImplementedError

    def install_schema(self, statements: Sequence[str]) -> None:
        """Run the (idempotent) DDL and record this version; the caller holds the transaction."""
        for statement in statements:
            self.raw_execute(statement)
        self.raw_execute(
            "INSERT INTO evflow_meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )

    def raw_execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement as it is (placeholders translated); the driver's cursor."""
        if self.paramstyle_format:
            sql = _to_format(sql)
        return self.conn.execute(sql, params)

    def raw_executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row, in as few round trips as the driver allows."""
        if self.paramstyle_format:
            sql = _to_format(sql)
        cursor = self.conn.cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()

    def iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of a query, streamed (never the whole result in memory)."""
        cur = self.execute(sql, params)
        while True:
            rows = cur.fetchmany(1000)
            if not rows:
                return
            yield from rows

    def close(self) -> None:
        self.conn.close()

    # -- shared -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the appends buffered by the write in progress, if any."""
        if self._tx is not None:
            self._tx.flush()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.flush()
        return self.raw_execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.flush()
        self.raw_executemany(sql, rows)

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """A write transaction; commits on success, rolls everything back on any exception."""
        self.begin_write()
        tx = self._tx = Transaction(self)
        try:
            yield tx
            tx.flush()
            self._tx = None
            self.commit()
        except BaseException:
            # the body failed, or COMMIT itself did (a full disk): leave no transaction open
            self._tx = None
            self.rollback()
            raise

    def append(self, event: Event) -> Appended:
        with self.write() as tx:
            return tx.append(event)

    # reading the log

    def read(self, flt: EventFilter | None = None) -> Iterator[Event]:
        """Events matching ``flt`` in ``seq`` order, streamed."""
        flt = flt or EventFilter()
        where = ["seq > ?"]
        params: list[Any] = [flt.since_seq]
        if flt.until_seq is not None:
            where.append("seq <= ?")
            params.append(flt.until_seq)
        if flt.since_time is not None:
            where.append("time >= ?")
            params.append(flt.since_time)
        if flt.until_time is not None:
            where.append("time < ?")
            params.append(flt.until_time)
        if flt.subject is not None:
            where.append("subject = ?")
            params.append(flt.subject)
        if flt.correlationid is not None:
            where.append("correlationid = ?")
            params.append(flt.correlationid)
        python_globs: list[str] = []
        if flt.types:
            clauses = []
            for pattern in flt.types:
                like = _glob_to_like(pattern)
                if like is None:
                    python_globs.append(pattern)
                    clauses.append("1 = 1")
                elif "%" in like:
                    clauses.append("type LIKE ?")
                    params.append(like)
                else:
                    clauses.append("type = ?")
                    params.append(like)
            where.append("(" + " OR ".join(clauses) + ")")
        sql = f"SELECT {EVENT_COLUMNS}, type FROM events WHERE {' AND '.join(where)} ORDER BY seq"
        if flt.limit is not None and not python_globs:
            sql += f" LIMIT {int(flt.limit)}"
        count = 0
        for seq, recorded, body, etype in self.iterate(sql, params):
            if python_globs and not any(fnmatch.fnmatchcase(etype, g) for g in flt.types):
                continue
            yield event_from_row(seq, recorded, body)
            count += 1
            if flt.limit is not None and count >= flt.limit:
                return

    def scan(
        self, after: int, end: int, types: Sequence[str], limit: int
    ) -> list[tuple[int, str, str, str]]:
        """``(seq, recordedtime, type, body)`` of up to ``limit`` events in ``(after, end]``, in
        ``seq`` order, only of ``types`` when given (exact types): a replay's batch."""
        clause = ""
        if types:
            # ``type || ''`` keeps the planner on the seq range: through the type index it would
            # collect every matching event up to the end of the log and sort them, for every batch
            clause = f" AND type || '' IN ({', '.join('?' for _ in types)})"
        rows = self.execute(
            "SELECT seq, recordedtime, type, body FROM events WHERE seq > ? AND seq <= ?"
            f"{clause} ORDER BY seq LIMIT ?",
            (after, end, *types, limit),
        ).fetchall()
        self.end_read()
        return rows

    def scan_until(
        self, seq: int, time: str | None = None, after: int = 0
    ) -> Iterator[tuple[int, str, str, str]]:
        """``(seq, recordedtime, type, body)`` of every event after ``after`` up to ``seq``
        (inclusive) whose own time is at or before ``time`` when given, in ``seq`` order,
        streamed."""
        sql = "SELECT seq, recordedtime, type, body FROM events WHERE seq > ? AND seq <= ?"
        params: list[Any] = [after, seq]
        if time is not None:
            sql += " AND time <= ?"
            params.append(time)
        try:
            yield from self.iterate(sql + " ORDER BY seq", params)
        finally:
            self.end_read()

    def get(self, ref: str | int) -> Event | None:
        """An event by ``seq`` (an int or digits) or by ``id`` (also an id made of digits)."""
        row = None
        if isinstance(ref, int):
            as_seq = ref
        else:
            as_seq = int(ref) if ref.isascii() and ref.isdigit() and len(ref) <= 19 else -1
        if 0 <= as_seq < 2**63:  # digits beyond any position can only be an id
            row = self.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?", (as_seq,)
            ).fetchone()
        if row is None and isinstance(ref, str):
            row = self.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ? ORDER BY seq LIMIT 1", (ref,)
            ).fetchone()
        self.end_read()
        return None if row is None else event_from_row(*row)

    def caused_by(self, event_id: str) -> list[Event]:
        """The events whose ``causationid`` is ``event_id``, in ``seq`` order."""
        rows = self.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE causationid = ? ORDER BY seq", (event_id,)
        ).fetchall()
        self.end_read()
        return [event_from_row(*r) for r in rows]

    def rule_errors(self, event_seq: int) -> list[tuple[str, str]]:
        """(rule, message) for each rule that failed on this event (filter, emit action)."""
        rows = self.execute(
            "SELECT rule, message FROM rule_errors WHERE event_seq = ? ORDER BY rule", (event_seq,)
        ).fetchall()
        self.end_read()
        return [(r[0], r[1]) for r in rows]

    def last_seq(self) -> int:
        row = self.execute("SELECT MAX(seq) FROM events").fetchone()
        self.end_read()
        return int(row[0] or 0)

    def end_read(self) -> None:
        """Close the implicit read transaction some drivers open (so writers are not held up)."""

    def stats(self) -> Stats:
        stats = Stats()
        row = self.execute("SELECT COUNT(*), MIN(time), MAX(time), MAX(seq) FROM events").fetchone()
        stats.events = int(row[0])
        stats.first_time, stats.last_time = row[1], row[2]
        stats.last_seq = int(row[3] or 0)
        for etype, count in self.execute(
            "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type"
        ).fetchall():
            stats.by_type[etype] = int(count)
        for status, count in self.execute(
            "SELECT status, COUNT(*) FROM deliveries GROUP BY status"
        ).fetchall():
            stats.deliveries[status] = int(count)
        for status, count in self.execute(
            "SELECT status, COUNT(*) FROM timers GROUP BY status"
        ).fetchall():
            stats.timers[status] = int(count)
        self.end_read()
        return stats

    # deliveries

    def deliveries(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        event_seq: int | None = None,
        ids: Sequence[int] | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if status is not None:
            if status not in DELIVERY_STATUSES:
                raise ValueError(f"unknown status {status!r}")
            where.append("status = ?")
            params.append(status)
        if rule is not None:
            where.append("rule = ?")
            params.append(rule)
        if event_seq is not None:
            where.append("event_seq = ?")
            params.append(event_seq)
        if ids:
            where.append(f"id IN ({', '.join('?' for _ in ids)})")
            params.extend(ids)
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {' AND '.join(where)} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.execute(sql, params).fetchall()
        self.end_read()
        return [delivery_from_row(row) for row in rows]
