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
from evflow.store.rows import (
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    delivery_from_row,
    event_from_row,
)
from evflow.store.schema import SCHEMA_VERSION
from evflow.store.transaction import Transaction


@lru_cache(maxsize=512)
def _to_format(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _glob_to_like(pattern: str) -> str | None:
    """A type glob as a LIKE pattern, or None when it needs more than ``*`` (then: Python)."""
    if any(c in pattern for c in "?[]%_"):
        return None
    return pattern.replace("*", "%")


class SqlStore:
    """The log over a DB-API connection; subclasses supply the dialect."""

    paramstyle_format = False
    display_url = ""
    tables_url = ""  # where SQL read-model tables go by default (password and schema kept)

    # -- hooks for backends -------------------------------------------------------------------

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._tx: Transaction | None = None  # the write in progress, whose appends may be buffered

    def scan_body(self) -> str:
        """How a replay's scan reads an event's body: a backend that can hand over its UTF-8
        bytes saves making a str that the decoder would encode again (rows.bulk_decoder)."""
        return "body"

    def prepare_bulk_write(self) -> None:
        """About to append many events in one transaction (an import): tune for it."""

    def bulk_writable(self) -> bool:
        """Whether another process may write a large import's rows while this one routes them
        (:class:`evflow.store.bulkwriter.BulkWriter`)."""
        return False

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

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        """Run an ``INSERT … ON CONFLICT … DO NOTHING`` into a table keyed by ``id``: the new
        row's id, or None when the row conflicted and nothing was inserted."""
        row = self.raw_execute(sql + " RETURNING id", params).fetchone()
        return None if row is None else int(row[0])

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
    def write(self, *, synced: bool = True) -> Iterator[Transaction]:
        """A write transaction; commits on success, rolls everything back on any exception.

        ``synced=False``: the commit may skip waiting for the disk where that loses it only
        with the machine (a power loss, an OS crash), never with a process: SQLite's
        ``synchronous=NORMAL`` in WAL mode. For what may be redone after such a loss and that no
        process on another machine acts on (a worker's delivery bookkeeping). Elsewhere (a
        PostgreSQL server may be another machine that fails alone) every commit is synced."""
        relaxed = not synced and self.relax_sync(True)
        try:
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
        finally:
            if relaxed:
                self.relax_sync(False)

    def relax_sync(self, relaxed: bool) -> bool:
        """Commits that skip waiting for the disk from now on (see :meth:`write`), or not;
        whether this backend does that."""
        return False

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
        order = "seq DESC" if flt.reverse else "seq"
        sql = (
            f"SELECT {EVENT_COLUMNS}, type FROM events WHERE {' AND '.join(where)} ORDER BY {order}"
        )
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
    ) -> list[tuple[int, str, str, str | bytes]]:
        """``(seq, recordedtime, type, body)`` of up to ``limit`` events in ``(after, end]``, in
        ``seq`` order, only of ``types`` when given (exact types): a replay's batch. The body is
        text, or its UTF-8 bytes (see :meth:`scan_body`; :func:`rows.bulk_decoder` reads both)."""
        clause = ""
        if types:
            # ``type || ''`` keeps the planner on the seq range: through the type index it would
            # collect every matching event up to the end of the log and sort them, for every batch
            clause = f" AND type || '' IN ({', '.join('?' for _ in types)})"
        rows = self.execute(
            f"SELECT seq, recordedtime, type, {self.scan_body()} FROM events"
            f" WHERE seq > ? AND seq <= ?{clause} ORDER BY seq LIMIT ?",
            (after, end, *types, limit),
        ).fetchall()
        self.end_read()
        return rows

    def scan_until(
        self, seq: int, time: str | None = None, after: int = 0
    ) -> Iterator[tuple[int, str, str, str | bytes]]:
        """``(seq, recordedtime, type, body)`` of every event after ``after`` up to ``seq``
        (inclusive) whose own time is at or before ``time`` when given, in ``seq`` order,
        streamed."""
        sql = (
            f"SELECT seq, recordedtime, type, {self.scan_body()} FROM events"
            " WHERE seq > ? AND seq <= ?"
        )
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

    def writers_waiting(self) -> bool:
        """Whether another writer may be waiting for the write lock (then a long import pauses
        between its chunks); a backend that cannot tell says True."""
        return True

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
        rows = self.execute(*self._deliveries_sql(status, rule, event_seq, ids, limit)).fetchall()
        self.end_read()
        return [delivery_from_row(row) for row in rows]

    def stream_deliveries(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> Iterator[Delivery]:
        """Deliveries in id order (``reverse``: newest first), streamed (flat memory)."""
        sql, params = self._deliveries_sql(status, rule, None, None, limit, reverse)
        try:
            for row in self.iterate(sql, params):
                yield delivery_from_row(row)
        finally:
            self.end_read()

    def _deliveries_sql(
        self,
        status: str | None,
        rule: str | None,
        event_seq: int | None,
        ids: Sequence[int] | None,
        limit: int | None,
        reverse: bool = False,
    ) -> tuple[str, list[Any]]:
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
        order = "id DESC" if reverse else "id"
        sql = (
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {' AND '.join(where)}"
            f" ORDER BY {order}"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return sql, params
