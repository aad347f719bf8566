"""``import``: many events appended in file order, in one transaction or in chunks.

``lines`` yields ``(where, raw)`` pairs (``where`` is ``FILE:LINE``; ``raw`` a parsed JSON value,
or an :class:`InvalidEvent` for a line that did not parse). The first bad line raises and nothing
is recorded, unless ``skip_invalid``, which records the good lines and lists every bad one.

**Chunks** (issue 16). One transaction holds the write lock for the whole import, so every other
writer waits for it (and on SQLite fails after the busy timeout). With ``chunk``, ``lines`` is a
function giving the lines afresh: first every line is checked, so a bad one still records
nothing; then the events are written ``chunk`` at a time, each chunk its own transaction, and
other writers get their turn between chunks. The checking pass keeps the checked events (their
JSON text and their row's columns, up to :data:`KEEP_CHECKED`) for the writing pass, which
decodes only those that a rule routes; a larger input is read a second time.
What is not atomic any more: a failure found only while writing (a rule's derived event that is
invalid, the database going away) leaves the chunks before it recorded; importing the same input
again completes it (known ids are skipped; a line without an ``id`` gets one derived from its
content, the same each time).

**Two processes** (issue 16). From :data:`PIPED_MIN` lines on, a chunked import on SQLite gets
a writing process (:mod:`evflow.services.importchild`, :mod:`evflow.store.bulkwriter`): it
checks blocks of lines during the checking pass, as many as its speed allows (:func:`_give`),
then holds each chunk's transaction and runs its inserts while this process routes the next
events, and commits it while this process prepares the next chunk. The answers are the same.

**History** (issue 13). A line that carries ``seq``/``recordedtime`` is a line of an evflow log's
export: recorded as it is, no rule runs on it, unless ``reroute`` (see
:func:`evflow.services.append.normalized_chunks`).

:func:`ingest` is the same for other systems (bridges): each event in its own savepoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from sys import intern
from typing import TYPE_CHECKING, Any, cast

from evflow.core.events import Event, check_outside_source
from evflow.core.structs import dataclass, field
from evflow.errors import EvflowError, InvalidEvent

if TYPE_CHECKING:
    from typing import Protocol

    from evflow.core.routing import Outcome
    from evflow.core.rules import RuleSet
    from evflow.store.interface import Store

Lines = Iterable[tuple[str, Any]]

if TYPE_CHECKING:  # a class made at import would cost emit, which imports this module

    class Reread(Protocol):
        """Lines that can be read again, parsed (a call) or as they are: ``(where, bytes)``
        (``raw``), for a checking pass that the writing process shares."""

        def __call__(self) -> Lines: ...

        def raw(self) -> Iterator[tuple[str, bytes]]: ...


PAUSE = 0.01  # between chunks when a writer waits for the lock: it takes it (retrying every 4 ms)
# The checking pass of a chunked import keeps each checked event as its compact JSON text and
# its row's columns, up to this many characters in all (the text, the line's name and
# COLUMNS_COST for the columns; ~100 MB at most with Python's object overheads), so that the
# writing pass appends them instead of reading, parsing and normalizing every line a second time
# (a third of an import, issue 16). A larger input is read again, as before.
KEEP_CHECKED = 60_000_000
# From this many checked lines on, a chunked import on SQLite writes through a child process
# while this one routes the next events (evflow.store.bulkwriter): it costs ~0.1 s to start.
PIPED_MIN = 5_000
BLOCK = 2_000  # lines per block of a checking pass that the writing process shares


@dataclass(slots=True)
class ImportResult:
    recorded: int = 0
    duplicates: int = 0
    derived: int = 0
    deliveries: list[int] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # "FILE:LINE: problem", with --skip-invalid
    last_seq: int = 0
    history: int = 0  # lines of an evflow log's export, recorded as they are (no rule ran)
    history_seen: int = 0  # history lines already in the log
    rule_failures: list[str] = field(default_factory=list)  # "FILE:LINE: rule R: problem"


def import_events(
    store: Store,
    ruleset: RuleSet,
    lines: Lines | Callable[[], Lines],
    *,
    skip_invalid: bool = False,
    reroute: bool = False,
    progress: Callable[[int], None] | None = None,
    chunk: int | None = None,
) -> ImportResult:
    """Append the events of ``lines`` (see the module doc); one transaction without ``chunk``."""
    import gc

    # An import allocates many small objects and keeps few: the cyclic collector would rescan
    # the checked events over and over (as for replay, it is paused while the import runs).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _import(store, ruleset, lines, skip_invalid, reroute, progress, chunk)
    finally:
        if collecting:
            gc.enable()


def _import(
    store: Store,
    ruleset: RuleSet,
    lines: Lines | Callable[[], Lines],
    skip_invalid: bool,
    reroute: bool,
    progress: Callable[[int], None] | None,
    chunk: int | None,
) -> ImportResult:
    result = ImportResult()
    store.prepare_bulk_write()
    if chunk is None:
        assert not callable(lines), "one transaction reads the lines once: pass them"
        _write(store, ruleset, result, lines, skip_invalid, reroute, progress, 0)
        return result
    import time
    from functools import partial
    from itertools import islice

    if not callable(lines):
        raise TypeError("a chunked import reads its lines twice: pass a function giving them")
    # every line is checked before anything is written
    writer: Any = None
    if skip_invalid:
        kept = None
    elif hasattr(lines, "raw"):
        kept, writer = _check_shared(store, ruleset, cast("Reread", lines), reroute)
    else:
        kept = check_lines(lines(), reroute)[0]
    try:
        source: Iterator[Any] = iter(lines()) if kept is None else iter(kept)
        if writer is None:
            writer = _writer(store, ruleset, skip_invalid, kept)
        # the child commits a chunk while this process prepares the next (see BulkWriter.write)
        write = store.write if writer is None else partial(writer.write, wait=False)
        done = 0
        while True:
            block = list(islice(source, chunk))
            if not block:
                if writer is not None:
                    writer.settle()  # the last commit's failure is raised here
                return result
            if done and store.writers_waiting():
                if writer is not None:
                    writer.settle()  # the lock is free once the commit is answered
                time.sleep(PAUSE)
            done = _write(
                store, ruleset, result, block, skip_invalid, reroute, progress, done,
                kept is not None, write,
            )  # fmt: skip
    except BaseException:
        if writer is not None:
            writer.abandon()  # at once: it may be waiting for the write lock
        raise
    finally:
        if writer is not None:
            writer.close()


def _writer(
    store: Store,
    ruleset: RuleSet,
    skip_invalid: bool,
    kept: list[Kept] | None,
    *,
    wait: bool = True,
) -> Any:
    """The child process that writes this import's chunks (:mod:`evflow.store.bulkwriter`), when
    the import is large, the backend has one, and nothing in it needs more than appends,
    deliveries and rule errors: no savepoints (``--skip-invalid``), no timers. Else None.
    ``wait``: until it has opened the log (see ``BulkWriter.started``)."""
    if skip_invalid or (kept is not None and len(kept) < PIPED_MIN):
        return None
    if any(action.timing is not None for rule in ruleset.rules for action in rule.actions):
        return None
    if not store.bulk_writable():
        return None
    from evflow.store.bulkwriter import BulkWriter

    try:
        return BulkWriter(store, "evflow.services.importchild", wait=wait)
    except Exception:  # noqa: BLE001 - it could not start or open the log here: one process
        return None


# What the writing pass needs of an event that no rule routes: its columns (see _columns)
Columns = tuple[str, str, str, str | None, str, str | None, str | None, str | None]
Kept = tuple[str, str, Columns | None]  # (where, JSON text, columns; None for history)
COLUMNS_COST = 150  # characters counted against KEEP_CHECKED for the columns kept with a text


def _columns(event: Event) -> Columns:
    """The columns of an event's row (its text is the rest): the writing pass appends an event
    that no rule routes from these, without decoding its text again."""
    get = event.get
    return (  # a type and a source are shared by many events: one string each
        event["id"], intern(event["source"]), intern(event["type"]), get("subject"), event["time"],
        get("causationid"), get("correlationid"), get("evflowrule"),
    )  # fmt: skip


def _from_columns(c: Columns) -> Event:
    """The event as far as appending it without routing reads it (the row's columns)."""
    return {
        "id": c[0], "source": c[1], "type": c[2], "subject": c[3], "time": c[4],
        "causationid": c[5], "correlationid": c[6], "evflowrule": c[7],
    }  # fmt: skip


def check_lines(
    lines: Lines, reroute: bool, budget: int = KEEP_CHECKED
) -> tuple[list[Kept] | None, int]:
    """Check every line (the first bad one raises); the checked events as ``(where, JSON
    text, columns)``, or None when they would take more than ``budget`` characters to keep, and
    the characters they take. History lines keep no columns: their text holds the
    ``recordedtime`` they are recorded with."""
    from evflow.core.jsontext import dumps_checked
    from evflow.services.append import normalize_line

    kept: list[Kept] | None = [] if budget >= 0 else None
    size = 0
    for where, raw in lines:
        if isinstance(raw, InvalidEvent):
            raise raw
        event = normalize_line(raw, where, reroute)
        if kept is None:
            continue
        try:
            text = dumps_checked(event)  # normalize checked it (check_json)
        except (TypeError, ValueError):  # the write says what is wrong with it, as before
            kept = None
            continue
        size += len(text) + len(where) + COLUMNS_COST
        if size > budget:
            kept = None
            continue
        kept.append((where, text, None if "recordedtime" in event else _columns(event)))
    return kept, size


def _check_shared(
    store: Store, ruleset: RuleSet, lines: Reread, reroute: bool
) -> tuple[list[Kept] | None, Any]:
    """:func:`check_lines` of the whole input, and the writing process if this import gets
    one (:func:`_writer`): once the input has :data:`PIPED_MIN` lines, that process is started,
    and once it is up it checks blocks of :data:`BLOCK` lines while this one checks the others
    (:func:`_give` shares them out). The answer is the same: the first bad line in file order
    raises, and nothing is written before."""
    from itertools import islice

    from evflow.core.lines import parse_line

    raw = iter(lines.raw())
    writer: Any = None
    tried = False
    parts: list[list[Kept] | None | int] = []  # this one's blocks; an int: the other's block
    given = 0  # blocks the writing process was given
    used = 0  # what the blocks checked so far keep, by both processes (see check_lines)
    counted = 0  # the writing process's answers counted in ``used``
    seen = 0
    failed: tuple[int, InvalidEvent] | None = None
    theirs: dict[int, Any] = {}
    try:
        while (block := list(islice(raw, BLOCK))) and failed is None:
            index = len(parts)
            if not tried and seen >= PIPED_MIN:
                tried = True
                writer = _writer(store, ruleset, False, None, wait=False)
            seen += len(block)
            if writer is not None:
                shared = _give(writer, index, given)
                used += sum(_their_size(answer) for answer in writer.acks[counted:])
                counted = len(writer.acks)
                if shared:
                    writer.send(("check", index, block, reroute, KEEP_CHECKED - used))
                    given += 1
                    parts.append(index)
                    continue
            try:
                part, size = check_lines(
                    [item for where, line in block for item in parse_line(where, line)],
                    reroute,
                    KEEP_CHECKED - used,
                )
            except InvalidEvent as exc:
                failed = (index, exc)
                break
            used += size if part is not None else KEEP_CHECKED + 1  # over: check, keep no more
            parts.append(part)
        if writer is not None and not _writes(writer, given):
            writer.abandon()  # it could not open the log, or is not up yet for a small input
            writer.close()
            writer = None
        if writer is not None:
            writer.poll(wait_for=given)
            used += sum(_their_size(answer) for answer in writer.acks[counted:])
            theirs = dict(writer.acks)
            writer.acks.clear()
        errors = [(i, _their_error(r)) for i, r in theirs.items() if r[0] not in ("ok", "skipped")]
        if failed is not None:
            errors.append(failed)
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
    except BaseException:
        if writer is not None:
            writer.abandon()
            writer.close()
        raise
    kept: list[Kept] | None = [] if used <= KEEP_CHECKED else None
    for mine in parts:
        done: list[Kept] | None = theirs[mine][1] if isinstance(mine, int) else mine
        if done is None or kept is None:
            kept = None
            continue
        kept.extend(done)
    return kept, writer


AHEAD = 2  # blocks the writing process may have to check before this one gives it more


def _give(writer: Any, index: int, given: int) -> bool:
    """Whether the writing process checks block ``index``: once it is up, whenever it has
    fewer than :data:`AHEAD` blocks left to check, so both finish together whatever their
    speeds (it starts later, and shares its core with the inserts of others)."""
    try:
        return bool(writer.started(wait=False)) and given - writer.poll() < AHEAD
    except Exception:  # noqa: BLE001 - it could not open the log (or is gone): not given more
        return False


def _writes(writer: Any, given: int) -> bool:
    """Whether the writing process writes this import, once the checking pass is over (it is
    waited for if not up yet). If it could not open the log, this process writes alone;
    if it was given blocks to check, it must answer for them."""
    try:
        return bool(writer.started())
    except Exception:  # noqa: BLE001 - as _writer: one process
        if given:
            raise
        return False


def _their_size(answer: tuple[int, tuple[Any, ...]]) -> int:
    """What a block the writing process checked keeps (more than all when it keeps nothing)."""
    result = answer[1]
    return result[2] if result[0] == "ok" and result[1] is not None else KEEP_CHECKED + 1


def _their_error(result: tuple[Any, ...]) -> EvflowError:
    """A block's problem as the writing process reported it (see :mod:`.importchild`)."""
    if result[0] == "invalid":
        return InvalidEvent(*result[1:])
    return EvflowError(f"checking the input failed: {result[1]}")


def _write(
    store: Store,
    ruleset: RuleSet,
    result: ImportResult,
    lines: Lines,
    skip_invalid: bool,
    reroute: bool,
    progress: Callable[[int], None] | None,
    before: int,
    checked: bool = False,
    write: Callable[[], AbstractContextManager[Any]] | None = None,
) -> int:
    """One transaction of an import; returns how many lines have been read in all.
    ``checked``: the lines are ``(where, JSON text, columns)`` of events already normalized (by
    :func:`check_lines`); decoded, they are the same dicts normalize made, and the text is the body.
    An event that no rule routes is appended from its columns, its text not decoded again."""
    from evflow.core.jsontext import dumps_checked
    from evflow.core.routing import Outcome
    from evflow.services.append import Appender, normalized_chunks

    appender = Appender(ruleset, encode=dumps_checked)
    count = before
    bodies: dict[str, str] | None = None
    if checked:
        from evflow.store.rows import loads

        block = cast("list[Kept]", list(lines))
        bodies = {where: text for where, text, _ in block}
        if len(bodies) != len(block):  # two lines with one ``where``: encode each, as before
            bodies = None
        routes = appender.routes
        lines = [
            (where, loads(text))
            if bodies is None or columns is None or routes(columns[2])
            else (where, _from_columns(columns))
            for where, text, columns in block
        ]
    with (write or store.write)() as tx:
        items = normalized_chunks(
            tx, lines, reroute=reroute, checked=checked, derivable=appender.derivable
        )
        done = appender.append_each(tx, items, isolate=skip_invalid, bodies=bodies)
        for count, (where, outcome) in enumerate(done, before + 1):
            if isinstance(outcome, InvalidEvent):
                result.invalid.append(str(outcome))
            elif isinstance(outcome, EvflowError):
                result.invalid.append(str(InvalidEvent("event", str(outcome), where)))
            elif outcome.duplicate:
                result.duplicates += 1
                result.history_seen += outcome.history
            else:
                result.recorded += 1
                result.derived += len(outcome.derived)
                result.last_seq = outcome.event["seq"]
                result.history += outcome.history
            if isinstance(outcome, Outcome):
                if outcome.deliveries:  # most events owe nothing: no generator for them
                    result.deliveries.extend(d["id"] for d in outcome.deliveries)
                if outcome.failures:
                    result.rule_failures.extend(f"{where}: {w}" for w in outcome.warnings())
            if progress is not None and count % 500 == 0:
                progress(count)
    return count


def ingest(
    store: Store, ruleset: RuleSet, items: Sequence[tuple[str, Event | InvalidEvent]]
) -> list[tuple[str, Outcome | EvflowError]]:
    """Append a batch from another system in one transaction, each event on its own: one that
    fails (invalid, claiming an ``evflow:`` source, not storable) is undone alone and returned as
    its error, the others are recorded."""
    from evflow.services.append import Appender

    checked: list[tuple[str, Event | InvalidEvent]] = []
    for where, event in items:
        if isinstance(event, dict):
            try:
                check_outside_source(event, where)
            except InvalidEvent as exc:
                event = exc
        checked.append((where, event))
    with store.write() as tx:
        return list(Appender(ruleset).append_each(tx, checked, isolate=True))
