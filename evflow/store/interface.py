"""The storage interface that services use; :class:`evflow.store.sql.SqlStore` implements it for
every backend (SQLite, PostgreSQL), and one contract suite (``tests/test_store_contract.py``) runs
against each.

Services type their dependencies with these protocols, never with a backend class. Helpers beyond
the log itself (outbox claims, snapshot rows and checkpoints, ticks, bridge positions) are
functions in their own store module taking the store as their first argument; they reach the
database through :meth:`Store.execute`, which is part of the protocol for them. SQL text stays in
:mod:`evflow.store`: an import-contract test fails when it appears in any other layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from evflow.core.events import Event
from evflow.core.records import Appended, Delivery, EventFilter, Stats


class WriteTransaction(Protocol):
    """A write in progress: appends and what they owe commit together or not at all."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def now(self) -> str: ...

    def append(
        self, event: Event, recordedtime: str | None = None, body: str | None = None
    ) -> Appended: ...

    def recorded(self, seq: int) -> Event: ...

    def known_absent(
        self, identities: Sequence[tuple[str, str]], ids: Sequence[str] = ()
    ) -> None: ...

    def savepoint(self) -> None: ...

    def release(self) -> None: ...

    def rollback_to_savepoint(self) -> None: ...

    def flush(self) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def raw_execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int | None: ...

    def add_rule_error(self, event_seq: int, rule: str, message: str) -> None: ...

    def add_delivery(
        self,
        event_seq: int,
        event_id: str,
        rule: str,
        action: int,
        kind: str,
        failed: str | None = None,
    ) -> int: ...


class Store(Protocol):
    """An event log: ordered appends, streamed reads, deliveries, and the store's clock."""

    display_url: str
    tables_url: str  # the URL of this database for SQL read-model tables (not to be printed)

    def write(self, *, synced: bool = True) -> AbstractContextManager[Any]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]: ...

    def prepare_bulk_write(self) -> None: ...

    def bulk_writable(self) -> bool: ...

    def clock(self) -> str: ...

    def read(self, flt: EventFilter | None = None) -> Iterator[Event]: ...

    def get(self, ref: str | int) -> Event | None: ...

    def caused_by(self, event_id: str) -> list[Event]: ...

    def rule_errors(self, event_seq: int) -> list[tuple[str, str]]: ...

    def last_seq(self) -> int: ...

    def stats(self) -> Stats: ...

    def deliveries(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        event_seq: int | None = None,
        ids: Sequence[int] | None = None,
        limit: int | None = None,
    ) -> list[Delivery]: ...

    def stream_deliveries(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> Iterator[Delivery]: ...

    def scan(
        self, after: int, end: int, types: Sequence[str], limit: int
    ) -> list[tuple[int, str, str, str | bytes]]: ...

    def scan_until(
        self, seq: int, time: str | None = None, after: int = 0
    ) -> Iterator[tuple[int, str, str, str | bytes]]: ...

    def end_read(self) -> None: ...
    def writers_waiting(self) -> bool: ...

    def close(self) -> None: ...
