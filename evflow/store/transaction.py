"""A write transaction of :class:`~evflow.store.sql.SqlStore`: appends and outbox rows that
commit together or not at all, appends buffered and written in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from evflow.core.events import Event
from evflow.core.records import Appended
from evflow.errors import InvalidEvent
from evflow.store.rows import EVENT_COLUMNS, INSERT_EVENT, encode_event, event_from_row


class _Connection(Protocol):
    """What a transaction needs of its store (:class:`~evflow.store.sql.SqlStore`)."""

    def clock(self) -> str: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def raw_execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def raw_executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int | None: ...


def _text(message: str | None) -> str | None:
    """A message for a text column: it may quote event data, and PostgreSQL's text cannot hold
    NUL; kept to a few thousand characters."""
    if message is None:
        return None
    message = message.replace("\x00", "\\0")
    return message if len(message) <= 4000 else message[:3999] + "…"


INSERT_RULE_ERROR = (
    "INSERT INTO rule_errors (event_seq, rule, message) VALUES (?, ?, ?)"
    " ON CONFLICT (event_seq, rule) DO NOTHING"
)
# a delivery row's columns from ``event_seq`` on (its id is the table's, or given before them)
DELIVERY_VALUES = (
    "event_seq, event_id, rule, action, kind, status, attempts, next_attempt_at, last_error,"
    " created_at, updated_at"
)


def owed(
    event_seq: int, event_id: str, rule: str, action: int, kind: str, failed: str | None, now: str
) -> tuple[Any, ...]:
    """The values of a new delivery row (:data:`DELIVERY_VALUES`): pending and due now, or
    ``dead`` after one attempt with the error ``failed`` (see :meth:`Transaction.add_delivery`)."""
    status, attempts, due = ("pending", 0, now) if failed is None else ("dead", 1, None)
    return (event_seq, event_id, rule, action, kind, status, attempts, due, _text(failed), now,
            now)  # fmt: skip


class Transaction:
    """A write transaction: appends and outbox rows that commit together or not at all.

    Appends are buffered and written in batches (``executemany``): ``seq`` is counted here,
    which is safe because the transaction holds the append lock. Any other statement run
    through the store first writes the buffer, so every query sees every append.
    """

    BATCH = 1000

    def __init__(self, store: _Connection) -> None:
        self.store = store
        self._now: str | None = None
        self._next_seq: int | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._buffered: dict[tuple[str, str], int] = {}  # (source, id) -> seq, not yet written
        self._absent: set[tuple[str, str]] = set()  # (source, id) known not to be in the log
        self._absent_ids: set[str] = set()  # ids no event of the log has, whatever its source

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
        if identity not in self._absent and identity[1] not in self._absent_ids:
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
        if self._absent:  # appended now: a second one must be looked up (once written, it is
            self._absent.discard(identity)  # no longer in _buffered)
        if self._absent_ids:
            self._absent_ids.discard(identity[1])
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

    def known_absent(
        self, identities: Sequence[tuple[str, str]], ids: Sequence[str] = ()
    ) -> None:
        """Look up many ``(source, id)`` at once (an import's next lines), and ``ids`` whatever
        their source (the events those lines may derive): those the log does not hold are
        appended without a lookup each."""
        self._absent.clear()
        wanted = set(identities)
        maybe = set(ids)
        asked = sorted({i for _, i in wanted} | maybe)
        found: set[tuple[str, str]] = set()
        for start in range(0, len(asked), 500):
            part = asked[start : start + 500]
            rows = self.execute(
                f"SELECT source, id FROM events WHERE id IN ({', '.join('?' for _ in part)})", part
            ).fetchall()
            found.update((r[0], r[1]) for r in rows)
        self._absent = wanted - found
        self._absent_ids = maybe - {i for _, i in found}

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

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        """Run an ``INSERT … ON CONFLICT … DO NOTHING`` (not into ``events``, like
        :meth:`raw_execute`): the new row's ``id``, or None when it conflicted."""
        return self.store.insert_id(sql, params)

    def add_rule_error(self, event_seq: int, rule: str, message: str) -> None:
        """Keep why a rule failed on an event (its filter, or an emit action); the first only."""
        self.store.raw_execute(INSERT_RULE_ERROR, (event_seq, rule, _text(message)))

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
        new = self.store.insert_id(
            f"INSERT INTO deliveries ({DELIVERY_VALUES}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_seq, rule, action) DO NOTHING",
            owed(event_seq, event_id, rule, action, kind, failed, self.now()),
        )
        if new is not None:
            return new
        row = self.store.raw_execute(
            "SELECT id FROM deliveries WHERE event_seq = ? AND rule = ? AND action = ?",
            (event_seq, rule, action),
        ).fetchone()
        return int(row[0])
