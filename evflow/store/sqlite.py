"""The SQLite backend: one file, many processes, writers serialized by SQLite itself.

WAL lets readers go on while one process writes; ``BEGIN IMMEDIATE`` takes the write lock at the
start of a transaction, so two emitters never both read and then fail to upgrade; a long busy
timeout makes a writer wait its turn instead of failing with "database is locked".
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evflow.errors import NoDatabase, StorageUnavailable

try:
    import fcntl
except ImportError:  # not on POSIX: SQLite's own lock only
    fcntl = None  # type: ignore[assignment]
from evflow.store.schema import SCHEMA_VERSION, schema_statements
from evflow.store.sql import SqlStore

BUSY_TIMEOUT_MS = 120_000
CACHE_KIB = 256 * 1024

SCHEMA = schema_statements(bigint="INTEGER", serial="INTEGER PRIMARY KEY AUTOINCREMENT", binary="")


def _read_only(path: Path) -> bool:
    """An existing database that this process cannot write (or whose folder it cannot write:
    SQLite needs to create its WAL files there)."""
    import os

    return path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


class SqliteStore(SqlStore):
    _scan_body: str | None = None

    def scan_body(self) -> str:
        """The body's bytes as stored, for orjson, in a database whose text is UTF-8 (a CAST
        gives the database's own encoding, which may be UTF-16: then the text)."""
        if self._scan_body is None:
            encoding = self.raw_execute("PRAGMA encoding").fetchone()[0]
            self._scan_body = "CAST(body AS BLOB)" if encoding == "UTF-8" else "body"
        return self._scan_body

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = path
        self.display_url = f"sqlite:///{path}"
        self.tables_url = self.display_url
        if not create and path != ":memory:" and not Path(path).is_file():
            raise NoDatabase(path)
        self.read_only = path != ":memory:" and _read_only(Path(path))
        if self.read_only:
            self._open_read_only(path)
            return
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

    def _open_read_only(self, path: str) -> None:
        """A database this process may read but not write (a read-only folder or file): opened
        immutable, so reading needs no lock file and no WAL index beside it. Reads work; a write
        fails with SQLite's "attempt to write a readonly database"."""
        from urllib.parse import quote

        try:
            conn = sqlite3.connect(
                f"file:{quote(path)}?mode=ro&immutable=1", uri=True, isolation_level=None
            )
            row = conn.execute(
                "SELECT value FROM evflow_meta WHERE key = 'schema_version'"
            ).fetchone()
        except sqlite3.Error as exc:
            raise StorageUnavailable(
                f"cannot open SQLite database {path} (read-only): {exc}"
            ) from None
        if row is None or int(row[0]) != SCHEMA_VERSION:
            found = "no evflow schema" if row is None else f"schema version {row[0]}"
            raise StorageUnavailable(
                f"{path}: {found} and the database is read-only (this evflow needs version"
                f" {SCHEMA_VERSION})",
                hint="open it once where it can be written, or upgrade evflow",
            )
        super().__init__(conn)

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

    def bulk_writable(self) -> bool:
        # a file another process can open and write (evflow.store.bulkwriter), started the
        # POSIX way (its answers on an inherited pipe, a process group of its own)
        return os.name == "posix" and self.path != ":memory:" and not self.read_only

    def relax_sync(self, relaxed: bool) -> bool:
        # WAL mode: NORMAL syncs the WAL at checkpoints only; what it commits survives any
        # process crash (the OS holds it), not a power loss. FULL (the default) syncs each commit.
        if self.path == ":memory:" or self.conn.in_transaction:
            return False  # SQLite cannot change it inside a transaction (one left by a failure)
        self.conn.execute(f"PRAGMA synchronous = {'NORMAL' if relaxed else 'FULL'}")
        return True

    def begin_write(self) -> None:
        self._queue_for_write()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._leave_queue()
            raise

    def commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        finally:
            if not self.conn.in_transaction:
                self._leave_queue()

    def rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        finally:
            self._leave_queue()

    def close(self) -> None:
        self._leave_queue()
        for name in ("_lock_fd", "_wait_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        super().close()

    # Writers queue on a lock file beside the database (``DB-evflow.lock``) before SQLite's own
    # write lock: a process waiting for SQLite's lock polls it with growing sleeps (up to 100 ms),
    # so with many writers, or behind an import that writes chunk after chunk, it can miss every
    # moment the lock is free (issue 16: K=8 emitters fell off, an emit waited out a whole
    # import). A writer waiting for the lock file tries again every 4 ms at most, and holds it
    # from just before BEGIN IMMEDIATE to just after COMMIT/ROLLBACK, so SQLite's lock is then
    # free at once. Waiting keeps SQLite's bound: after the busy timeout it gives up (exit 4).
    # Where the lock file cannot be used (a read-only folder, no fcntl), SQLite's lock alone.

    _lock_fd: int | None = None
    _queued = False

    def _queue_for_write(self) -> None:
        if self.path == ":memory:" or fcntl is None:
            return
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(
                    self.path + "-evflow.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666
                )
            except OSError:
                return
        if self._queued:
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._wait_in_queue()
        except OSError:
            return
        self._queued = True

    def _wait_in_queue(self) -> None:
        import time

        assert self._lock_fd is not None and fcntl is not None
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.0005
        waiting = self._say_waiting()
        try:
            while True:
                time.sleep(pause)
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    pass
                if time.monotonic() > deadline:
                    raise StorageUnavailable(
                        f"cannot write to SQLite database {self.path}: another writer has held"
                        f" it for {BUSY_TIMEOUT_MS // 1000} s"
                    )
                pause = min(pause * 2, 0.004)
        finally:
            if waiting:
                self._stop_waiting()

    # A writer waiting in the queue holds a shared lock on ``DB-evflow.wait``, so that an import
    # pauses between its chunks only when someone waits for its turn (writers_waiting).

    _wait_fd: int | None = None

    def _wait_file(self) -> int | None:
        if self._wait_fd is None:
            try:
                self._wait_fd = os.open(
                    self.path + "-evflow.wait", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666
                )
            except OSError:
                return None
        return self._wait_fd

    def _say_waiting(self) -> bool:
        """Hold the wait file shared (until _stop_waiting); False when it cannot be used."""
        assert fcntl is not None
        fd = self._wait_file()
        if fd is None:
            return False
        try:
            # blocking: the only exclusive holder is writers_waiting, for two system calls
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            return False
        return True

    def _stop_waiting(self) -> None:
        if self._wait_fd is not None and fcntl is not None:
            fcntl.flock(self._wait_fd, fcntl.LOCK_UN)

    def writers_waiting(self) -> bool:
        """Whether another writer waits for the write lock (True when that cannot be known)."""
        if self.path == ":memory:" or fcntl is None:
            return False
        fd = self._wait_file()
        if fd is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: a waiter holds it shared
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False

    def _leave_queue(self) -> None:
        if self._queued and self._lock_fd is not None and fcntl is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._queued = False

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        # SQLite's RETURNING costs four times the insert itself (32,000 deliveries of an import:
        # 1.7 s against 0.35 s): the statement's change count and the last rowid say the same
        cur = self.raw_execute(sql, params)
        return int(cur.lastrowid) if cur.rowcount == 1 else None

    def clock(self) -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        # a sqlite3 cursor already steps through the result row by row
        yield from self.execute(sql, params)
