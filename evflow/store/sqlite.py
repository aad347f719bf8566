"""The SQLite backend: one file, many processes, writers serialized by SQLite itself.

WAL lets readers go on while one process writes; ``BEGIN IMMEDIATE`` takes the write lock at the
start of a transaction, so two emitters never both read and then fail to upgrade; a long busy
timeout makes a writer wait its turn instead of failing with "database is locked".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evflow.errors import StorageUnavailable
from evflow.store.schema import SCHEMA_VERSION, schema_statements
from evflow.store.sql import SqlStore

BUSY_TIMEOUT_MS = 120_000
CACHE_KIB = 256 * 1024

SCHEMA = schema_statements(bigint="INTEGER", serial="INTEGER PRIMARY KEY AUTOINCREMENT", binary="")


class SqliteStore(SqlStore):
    def __init__(self, path: str) -> None:
        self.path = path
        self.display_url = f"sqlite:///{path}"
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
        except (sqlite3.Error, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StorageUnavailable(f"cannot open SQLite database {path}: {reason}") from None
        super().__init__(conn)
        self._migrate()

    def _migrate(self) -> None:
        try:
            version = self.conn.execute(
                "SELECT value FROM evflow_meta WHERE key = 'schema_version'"
            ).fetchone()
        except sqlite3.OperationalError:
            version = None
        if version is not None and int(version[0]) == SCHEMA_VERSION:
            return
        if version is not None and int(version[0]) > SCHEMA_VERSION:
            raise StorageUnavailable(
                f"{self.path}: schema version {version[0]} is newer than this evflow knows"
                f" ({SCHEMA_VERSION})",
                hint="upgrade evflow",
            )
        self.begin_write()
        try:
            self.install_schema(SCHEMA)
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def prepare_bulk_write(self) -> None:
        # A large import is one transaction: with SQLite's default 2 MB page cache its dirty
        # pages spill mid-transaction and every lookup slows down. Only imports ask for more,
        # so a replay's scan does not fill a large cache with pages it reads once.
        self.conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")

    def begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def clock(self) -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        # a sqlite3 cursor already steps through the result row by row
        yield from self.execute(sql, params)
