"""A second process that writes a large import into a SQLite file while this one routes it.

An ``import`` with rules spends about a third of its time inside SQLite (inserting the events and
deliveries, committing each chunk) and the rest in Python (checking, routing, deriving). Both
are single-threaded, and a thread cannot share them out: the interpreter lock would make the
writing thread wait for the routing one after every row. So a large import on SQLite starts a
child process (:class:`BulkWriter`, running this module's :func:`run`) that holds the write
transaction and runs the inserts, while the importing process routes the next events (issue 16).

What stays the same (one chunk is still one transaction that commits whole or not at all):

- This process decides everything: positions (``seq``) and delivery ids are counted here, as
  :class:`~evflow.store.transaction.Transaction` counts positions, which is safe because the
  child holds the write lock from ``BEGIN IMMEDIATE`` to the commit. Whether an identity is
  already in the log is read here, from what is committed (nobody else can commit meanwhile)
  and from what this transaction sent (kept in memory until the commit).
- A failure in the child (a full disk, say) is raised here at the commit, and the chunk rolls
  back. An import does not wait for the commit's answer: it prepares its next chunk meanwhile,
  and reads the answer before it starts that chunk (or before it ends), where the failure is
  raised.
- If this process stops (an exception, Ctrl-C) it ends the child, whose open transaction
  SQLite rolls back; if it dies, the child is ended with it (Linux) or reads the end of its
  input; if the child dies, this process raises :class:`~evflow.errors.StorageUnavailable`.
  An import stopped while it prepares a chunk may so lose the chunk before it too, whose commit
  was under way: what it says it recorded is read from the log afterwards, and running it
  again completes it, as after any interruption.

Only what an import of events without timers needs is supported (appends, deliveries, rule
errors); anything else raises, and the importer uses one process for it
(:func:`evflow.services.importing.import_events`).
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import IO, Any

from evflow.core.events import Event
from evflow.errors import StorageUnavailable
from evflow.store.rows import INSERT_EVENT, event_from_row
from evflow.store.transaction import (
    DELIVERY_VALUES,
    INSERT_RULE_ERROR,
    Transaction,
    _text,
    owed,
)

# the id given: this process counts them (see PipedTransaction.add_delivery)
INSERT_DELIVERY = (
    f"INSERT INTO deliveries (id, {DELIVERY_VALUES}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
PIPE_BYTES = 1 << 20  # how far ahead this process may write (Linux; elsewhere the OS's default)


class _Rows:
    """The rows of a query, already read."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


class _Reads:
    """What a piped transaction reads, from this process's own connection (committed rows);
    it writes nothing here: every write goes to the child."""

    def __init__(self, store: Any, writer: BulkWriter) -> None:
        self.store = store
        self.writer = writer

    def clock(self) -> str:
        return str(self.store.clock())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Rows:
        if not sql.lstrip().upper().startswith("SELECT"):
            raise NotImplementedError(f"a piped import only reads here: {sql.split()[0]}")
        # read whole, so that no statement left open pins this connection's view of the log
        # while the child commits chunk after chunk
        cursor = self.store.raw_execute(sql, params)
        try:
            return _Rows(cursor.fetchall())
        finally:
            cursor.close()

    raw_execute = execute

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.writer.send(("rows", sql, list(rows)))

    raw_executemany = executemany

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        raise NotImplementedError("a piped import counts its ids itself")


class PipedTransaction(Transaction):
    """A write transaction whose rows the child process writes (see the module doc)."""

    def __init__(self, store: Any, writer: BulkWriter) -> None:
        super().__init__(_Reads(store, writer))
        self._first_seq: int | None = None
        self._sent: list[tuple[Any, ...]] = []  # every event row of this transaction, in order
        self._others: list[tuple[str, tuple[Any, ...]]] = []  # deliveries and rule errors
        self._next_delivery: int | None = None

    def flush(self) -> None:
        """Send the buffered rows. Unlike a transaction of this process, it keeps knowing their
        identities (``_buffered``): this process cannot read them back before the commit."""
        if self._rows:
            if self._first_seq is None:
                self._first_seq = int(self._rows[0][0])
            self._sent.extend(self._rows)
            rows, self._rows = self._rows, []
            self.store.raw_executemany(INSERT_EVENT, rows)
        if self._others:
            others, self._others = self._others, []
            for sql in (INSERT_DELIVERY, INSERT_RULE_ERROR):
                batch = [row for kind, row in others if kind == sql]
                if batch:
                    self.store.raw_executemany(sql, batch)

    def recorded(self, seq: int) -> Event:
        first = self._first_seq
        if first is None and self._rows:
            first = int(self._rows[0][0])
        if first is not None and seq >= first:
            index = seq - first
            sent = len(self._sent)
            row = self._sent[index] if index < sent else self._rows[index - sent]
            return event_from_row(seq, row[6], row[10])
        return super().recorded(seq)

    def add_rule_error(self, event_seq: int, rule: str, message: str) -> None:
        self._others.append((INSERT_RULE_ERROR, (event_seq, rule, _text(message))))

    def add_delivery(
        self,
        event_seq: int,
        event_id: str,
        rule: str,
        action: int,
        kind: str,
        failed: str | None = None,
    ) -> int:
        if self._next_delivery is None:
            # AUTOINCREMENT: never an id the table has used, even one of a deleted row
            row = self.store.raw_execute(
                "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name ="
                " 'deliveries'), 0), COALESCE((SELECT MAX(id) FROM deliveries), 0))"
            ).fetchone()
            self._next_delivery = int(row[0]) + 1
        new = self._next_delivery
        self._next_delivery += 1
        row = (new, *owed(event_seq, event_id, rule, action, kind, failed, self.now()))
        self._others.append((INSERT_DELIVERY, row))
        if len(self._others) >= self.BATCH:
            self.flush()
        return new

    def _unsupported(self, *_: Any) -> None:
        raise NotImplementedError("a piped import has no savepoints")

    savepoint = release = rollback_to_savepoint = _unsupported


class BulkWriter:
    """The child process of a large import, and the transactions it writes (see the module
    doc). :meth:`close` lets it end once its input ends; :meth:`abandon` ends it at once (what
    it had not committed is rolled back either way)."""

    def __init__(self, store: Any, child: str = __name__, *, wait: bool = True) -> None:
        """Start the child; ``wait``: until it has opened the log (else see :meth:`started`)."""
        import subprocess

        self.store = store
        answers, their_end = os.pipe()
        # The child runs with -I (neither the current folder nor PYTHONPATH on its path) and
        # then takes exactly this process's module path: it runs the code that runs here. It
        # answers on a pipe of its own (not stdout, which anything may print to), and has its
        # own process group: Ctrl-C is this process's to handle.
        here = [os.path.abspath(entry) if entry else os.getcwd() for entry in sys.path]
        boot = (
            f"import sys; sys.path[:] = {here!r}; from importlib import import_module;"
            f" raise SystemExit(import_module({child!r}).run(sys.argv[1:]))"
        )
        group = {"process_group": 0} if os.name == "posix" else {}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", boot, store.path, str(their_end), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                pass_fds=(their_end,),
                **group,  # type: ignore[call-overload]
            )
        except OSError as exc:
            os.close(answers)
            raise StorageUnavailable(f"cannot start the import's writing process: {exc}") from None
        finally:
            os.close(their_end)
        assert self.proc.stdin is not None
        self._to: IO[bytes] = self.proc.stdin
        self._from = os.fdopen(answers, "rb", buffering=0)  # whole messages: select() tells
        self.acks: list[Any] = []  # what the child's own operations gave back (see run)
        self._unanswered = 0  # commits sent whose answer is read later (see write)
        self._hello: BaseException | bool | None = None  # the child's start: None until known
        try:
            import fcntl

            # how far ahead either may write before the other reads (the child's answers to a
            # checking pass are ~0.5 MB a block: it goes on with the next one meanwhile)
            for pipe in (self._to, self._from):
                fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
        except (ImportError, OSError):
            pass  # the OS's pipe size: one waits for the other sooner
        try:
            self.send(("hello",))
            if wait:
                self.started()
        except BaseException:
            self.abandon()
            self.close()
            raise

    def started(self, wait: bool = True) -> bool:
        """Whether the child has opened the log and is ready to write; ``wait``: until it says
        (its failure to open the log is raised), else False while it has not said yet."""
        while self._hello is None and (wait or self._pending()):
            self._receive()
        if isinstance(self._hello, BaseException):
            raise self._hello
        return bool(self._hello)

    def poll(self, wait_for: int = 0) -> int:
        """Read what the child has said without waiting (or until there are ``wait_for``
        acknowledgements); how many it has acknowledged so far (see :attr:`acks`)."""
        while len(self.acks) < wait_for or self._pending():
            self._receive()
        return len(self.acks)

    def _pending(self) -> bool:
        import select

        return bool(select.select([self._from], [], [], 0)[0])

    def _receive(self) -> tuple[Any, ...] | None:
        """One message of the child: an acknowledgement or its start are noted (None), an
        answer returned."""
        try:
            size = int.from_bytes(self._read(8), "little")
            message: tuple[Any, ...] = pickle.loads(self._read(size))
        except (EOFError, pickle.UnpicklingError):
            raise self._gone() from None
        if message[0] == "done":
            self.acks.append(message[1])
            return None
        if self._hello is None:  # the first answer is the start's
            self._hello = message[1] if message[0] == "error" else True
            return None
        return message

    def _read(self, size: int) -> bytearray:
        data = bytearray(size)
        view = memoryview(data)
        got = 0
        while got < size:
            n = self._from.readinto(view[got:])
            if not n:
                raise EOFError
            got += n
        return data

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            pickle.dump(message, self._to, protocol=pickle.HIGHEST_PROTOCOL)
            self._to.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the pipe is already closed here
            raise self._gone() from None

    def ask(self, message: tuple[Any, ...]) -> Any:
        """Send ``message`` and wait for the child's answer; its failure is raised here (or the
        failure of a commit sent before, whose answer comes first: see :meth:`write`)."""
        self.send(message)
        self.settle()
        return self._answer()

    def settle(self) -> None:
        """Wait for the answers to the commits sent without waiting (see :meth:`write`); the
        failure of one is raised here."""
        self.started()
        while self._unanswered:
            self._unanswered -= 1
            self._answer()

    def _answer(self) -> Any:
        while (answer := self._receive()) is None:
            pass
        if answer[0] == "error":
            raise answer[1]
        return answer[1]

    def _gone(self) -> StorageUnavailable:
        code = self.proc.poll()
        how = "" if code is None else f" (exit status {code})"
        return StorageUnavailable(
            f"the import's writing process stopped{how}; run the import again to complete it"
            " (what the log already holds is skipped)"
        )

    @contextmanager
    def write(self, wait: bool = True) -> Iterator[PipedTransaction]:
        """One transaction, written by the child: committed when the block ends, rolled back if
        it raises. ``wait=False``: the commit's answer is read before the next question or by
        :meth:`settle` (where its failure is raised), so that this process may prepare the next
        transaction while the child writes the end of this one and commits it."""
        try:
            self.ask(("begin",))  # the child may wait for the write lock (Ctrl-C ends it)
            tx = PipedTransaction(self.store, self)
            yield tx
            tx.flush()
        except BaseException:
            # the import stops here: the child is ended at once, and SQLite rolls back what it
            # had not committed (it may be waiting for the lock, or hold half a message)
            self.abandon()
            raise
        if wait:
            self.ask(("commit",))
        else:
            self.send(("commit",))
            self._unanswered += 1

    def abandon(self) -> None:
        """Stop the child at once: what it has not committed is rolled back (by SQLite, when a
        process that holds a transaction ends), and it may be waiting for the write lock."""
        with suppress(OSError):
            self._to.close()
        with suppress(OSError):
            self.proc.kill()

    def close(self) -> None:
        """End the child (what it has not committed is rolled back) and wait for it."""
        with suppress(OSError):
            self._to.close()
        try:
            self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001 - a child that does not end is killed
            self.proc.kill()
            self.proc.wait()
        self._from.close()


def _answer(out: IO[bytes], error: BaseException | None = None, value: Any = None) -> None:
    if error is None:
        message: tuple[Any, ...] = ("ok", value)
    else:
        try:
            pickle.loads(pickle.dumps(error))
            message = ("error", error)
        except Exception:  # noqa: BLE001 - an error that does not travel: its words do
            message = ("error", StorageUnavailable(f"{type(error).__name__}: {error}"))
    _put(out, message)


def _put(out: IO[bytes], message: tuple[Any, ...]) -> None:
    """A message to the importing process: its size, then its pickle (see BulkWriter._receive)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(len(data).to_bytes(8, "little"))
    out.write(data)
    out.flush()


def _die_with(parent: int) -> None:
    """End when the importing process ends, even while waiting for the write lock (Linux:
    the kernel's parent-death signal; elsewhere the end of the input, once read)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importing process's
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        raise SystemExit(1)  # it ended before this could be asked


# a child's own operation: what it gives back is sent as soon as it is done, and the importing
# process reads it when it likes (BulkWriter.poll, BulkWriter.acks)
Op = Callable[[tuple[Any, ...]], Any]


def run(argv: list[str], ops: Mapping[str, Op] | None = None) -> int:
    """The child (``argv``: the database, the answers' file descriptor, the importing
    process's id): run what the importing process sends, until its input ends. ``ops``: more
    operations by name (an importer's own: see :mod:`evflow.services.importchild`), which must
    not raise (a failure travels in what it gives back)."""
    path, answers, parent = argv[0], int(argv[1]), int(argv[2])
    _die_with(parent)
    try:
        return _serve(path, sys.stdin.buffer, os.fdopen(answers, "wb"), ops or {})
    except (BrokenPipeError, KeyboardInterrupt):
        return 1  # the importing process went away while this answered


def _serve(path: str, source: IO[bytes], out: IO[bytes], ops: Mapping[str, Op]) -> int:
    from evflow.store.sqlite import SqliteStore

    store: SqliteStore | None = None
    failed: BaseException | None = None
    try:
        while True:
            try:
                message = pickle.load(source)
            except EOFError:
                return 0  # the importing process is done, or gone: roll back what is open
            except Exception:  # noqa: BLE001 - a message cut short (an interrupt): the same
                return 1
            op = message[0]
            if op in ops:
                _put(out, ("done", ops[op](message)))
                continue
            if op == "rows":
                if failed is None:
                    try:
                        store.raw_executemany(message[1], message[2])  # type: ignore[union-attr]
                    except Exception as exc:  # noqa: BLE001 - raised there, at the commit
                        failed = exc
                continue
            try:
                if op == "hello":
                    store = SqliteStore(path)
                    store.prepare_bulk_write()
                elif op == "begin":
                    failed = None
                    store.begin_write()  # type: ignore[union-attr]
                elif op == "commit":
                    if failed is not None:
                        store.rollback()  # type: ignore[union-attr]
                        _answer(out, failed)
                        continue
                    try:
                        store.commit()  # type: ignore[union-attr]
                    except BaseException:
                        store.rollback()  # type: ignore[union-attr]
                        raise
            except Exception as exc:  # noqa: BLE001 - the importing process raises it
                _answer(out, exc)
                continue
            _answer(out)
    finally:
        if store is not None:
            store.rollback()  # what was not committed (the importing process went away)
            store.close()
