"""Materializing projections from the log, with checkpoints; reading them; folding the past.

``replay`` brings projections up to date: it reads the events after each projection's checkpoint
in batches (``seq`` order, a batch at a time: memory stays flat however long the log) and, per
batch, in one write transaction, re-reads the checkpoint, loads the rows the batch touches (each
once), folds the batch into them, and writes the changed rows together with the new checkpoint.
A crash at any point therefore leaves rows and checkpoint consistent, and the next replay resumes
from the checkpoint. Replay never runs actions: it only reads events and writes snapshots.

- **Definition changes.** A checkpoint records the projection's definition hash. When it differs
  from the loaded definition, the projection is rebuilt from scratch, with a notice. ``--rebuild``
  forces that. A rebuild is built aside, under the name ``NAME~rebuild``, and swapped in by one
  transaction at the end, so ``query`` sees the old snapshot or the new one, never half a rebuild.
  A rebuild that was interrupted resumes (aside) on the next replay if the definition is still the
  same; ``--rebuild`` starts over. A rebuild from scratch commits every ASIDE_WRITE_EVERY events
  rather than every batch (nobody reads the aside rows). (A ``python:`` handler's code is not
  part of the hash: after changing it, run ``evflow replay --rebuild NAME``.)
- **Handler errors** stop that projection at the event: :class:`ReplayFailed` names the event's
  ``seq``, the projection and the reason. The failing batch is not written for that projection, so
  its snapshot stays as it was before the batch; the other projections of the same run go on.
- **Skipped events.** An event whose key is null or fails to evaluate is skipped for that
  projection and counted in :attr:`ReplayResult.skipped` (the CLI prints a warning), never an error.
- **Concurrency.** Two replays of one projection may run at once (a ``query`` catching up while
  ``evflow replay`` runs): each batch re-reads the checkpoint inside its transaction and, when
  another process moved it, drops its batch for that projection and goes on from the new position,
  so no event is folded twice.

**Freshness.** ``emit`` and ``import`` do not pay for projections. Instead ``query`` brings the
projection it reads up to date (an incremental replay, whose cost grows with the new events only)
before reading, unless ``--as-of``; so it never answers from a snapshot behind the log. If that
catch-up fails (a handler error), ``query`` answers from the stored snapshot and says on stderr
that it is behind the log by N events (:func:`catch_up`).

**As of.** :func:`evflow.services.query.as_of` folds the log in memory from the start up to a
``seq`` (inclusive) or up to a time: the events whose own ``time`` is at or before it, in ``seq``
order (event time, as for windows, so back-filled events land where they belong). The stored
snapshot is not touched.

Over 500 lines as one cohesive module: the plan, the batch fold, its row cache, checkpoints and
snapshot copies all work on the same per-projection state (``_Target``), read together.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from evflow.core.projections import (
    SKIP,
    CompiledProjection,
    Fold,
    FoldFailure,
    HandlerError,
    Vars,
)
from evflow.core.structs import dataclass, field
from evflow.core.tables import ColumnMismatch, row_values
from evflow.errors import EvflowError, ReplayFailed, TablesNotKept, UnknownProjection
from evflow.store import rows, snapshots

if TYPE_CHECKING:
    from evflow.core.rules import Projection, RuleSet
    from evflow.services.tables import TableSink
    from evflow.store.interface import Store

BATCH_SIZE = 10000  # events per transaction: fewer commits, memory still bounded
# Rows kept between batches, per projection, so that a row is read from the database once per
# replay rather than once per batch: up to CACHE_ROWS decoded; past that, a row written is kept as
# the JSON text written (a tenth of the memory; decoded again when an event touches it), up to
# CACHE_TEXT_ROWS rows in all, the rows touched longest ago going first. (Emptying the cache
# when it passed 50,000 rows made a rebuild re-read 313,000 rows at 1,000,000 events: issue 16.)
CACHE_ROWS = 50_000
CACHE_TEXT_ROWS = 1_000_000
# A copy of each projection's snapshot is kept every COPY_EVERY events of the log (at the end of
# the batch that crosses the multiple), for `query --as-of`, which folds forward from the nearest
# copy: its cost follows the distance to a copy, not the position (issue 16).
COPY_EVERY = 50_000
# ... and at least COPY_ROWS_FACTOR x its rows after the previous copy: a copy writes every row, so
# a snapshot of many rows copied every COPY_EVERY events made a rebuild's cost per event grow
# with the log (issue 16); spaced by its size, a copy costs at most half a row per event, and an
# as-of read, which loads the copy's rows anyway, folds at most twice as many events as rows.
COPY_ROWS_FACTOR = 2
# A rebuild built aside (``--rebuild``, a changed definition) writes its rows and checkpoint every
# ASIDE_WRITE_EVERY events rather than every batch: nobody reads the aside rows, and a row touched
# in several batches is written once (a tenth of a rebuild). A rebuild that is interrupted resumes
# from its last write, up to this many events back.
ASIDE_WRITE_EVERY = 50_000
ASIDE = "~rebuild"  # projection names cannot hold '~', so NAME~rebuild never clashes
MAX_EXAMPLES = 3

Progress = Callable[[int, int], None]  # (events read so far, events to read)
Notice = Callable[[str], None]


def _types(targets: Sequence[_Target]) -> list[str]:
    """The event types to read when every handler names an exact type, so the database skips the
    events no projection folds (most of a log, often); none (read all) when a glob is involved."""
    types: set[str] = set()
    for t in targets:
        for pattern, _ in t.compiled.projection.handlers:
            if any(c in pattern for c in "*?["):
                return []
            types.add(pattern)
    return sorted(types)


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a projection: ``seq`` is the last event applied to it."""

    key: str
    state: dict[str, Any]
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "state": self.state, "seq": self.seq}


@dataclass(slots=True)
class ReplayResult:
    name: str
    start: int = 0  # checkpoint position before the run (0 for a rebuild)
    position: int = 0  # checkpoint position after it
    applied: int = 0  # events that changed a row
    skipped: int = 0  # events skipped because their key did not evaluate
    skip_examples: list[str] = field(default_factory=list)
    rebuilt: str | None = None  # why it was rebuilt from scratch, if it was
    error: HandlerError | None = None
    table_error: EvflowError | None = None  # its SQL table was not kept (the snapshot was)


def select(ruleset: RuleSet, names: Sequence[str] | None) -> list[Projection]:
    """The named projections (all when ``names`` is empty); raises UnknownProjection."""
    if not names:
        return list(ruleset.projections)
    known = [p.name for p in ruleset.projections]
    chosen = []
    for name in names:
        projection = ruleset.projection(name)
        if projection is None:
            raise UnknownProjection(name, known)
        if projection not in chosen:
            chosen.append(projection)
    return chosen


class _Target:
    """One projection being folded into one snapshot name (its own, or aside)."""

    __slots__ = (
        "cache",
        "compiled",
        "complete",
        "copied",
        "dirty",
        "expected",
        "failed",
        "folded",
        "hash",
        "held",
        "latest",
        "result",
        "sink",
        "table",
        "to_swap",
        "tracked_from",
        "values",
    )

    def __init__(self, compiled: CompiledProjection, table: str, expected: int) -> None:
        self.compiled = compiled
        self.table = table
        self.expected = expected  # the checkpoint position this process believes is stored
        self.folded = expected  # the position folded up to (past ``expected`` while held)
        # the last copy this build made (a build from 0 knows it: none yet; else looked up)
        self.copied: int | None = 0 if expected == 0 else None
        self.hash = compiled.projection.definition_hash
        self.result = ReplayResult(compiled.name, start=expected, position=expected)
        self.failed = False
        self.held = 0  # events folded into the cache and not yet written
        self.to_swap = table != compiled.name
        self.cache: dict[str, list[Any]] = {}
        # the cache holds every row of ``table`` (it was empty when this process started on it,
        # and nobody else wrote it since): a key not cached has no row, no need to ask
        self.complete = False
        self.dirty: set[str] | None = None
        self.sink: TableSink | None = None  # the projection's SQL table, if it has one
        self.values: dict[str, dict[str, Any] | None] = {}  # this batch's rows as table values
        # The latest event time among the events of the projection's types after
        # ``tracked_from``, seen while folding: the next snapshot copy's ``max_time`` without
        # reading the log's range again. None when a handler names a glob (the copy's range
        # then holds events this target does not see).
        self.latest = ""
        self.tracked_from: int | None = expected if _types([self]) else None


def _plan(
    store: Store,
    projections: list[Projection],
    rebuild: bool,
    notice: Notice,
    project_dir: str | None,
) -> list[_Target]:
    stored = snapshots.checkpoints(store)
    targets = []
    for projection in projections:
        compiled = CompiledProjection(projection, project_dir)
        name, aside = projection.name, projection.name + ASIDE
        current, pending = stored.get(name), stored.get(aside)
        digest = projection.definition_hash
        why: str | None = None
        if rebuild:
            why = "--rebuild"
        elif pending is not None and pending.definition == digest:
            notice(f"projection {name}: resuming an unfinished rebuild at seq {pending.position}")
            target = _Target(compiled, aside, pending.position)
            target.result.rebuilt = "resumed rebuild"
            targets.append(target)
            continue
        elif current is not None and current.definition != digest:
            why = "definition changed"
            notice(f"projection {name}: its definition changed; rebuilding it from the log")
        if why is None and current is not None:
            if pending is not None:  # an abandoned rebuild of an older definition
                with store.write():
                    snapshots.clear(store, aside)
            targets.append(_Target(compiled, name, current.position))
            continue
        if why is None and pending is None and not snapshots.has_rows(store, name):
            target = _Target(compiled, name, 0)  # first build: nothing to hide
            target.complete = True
            targets.append(target)
            continue
        with store.write():
            snapshots.clear(store, aside)
        target = _Target(compiled, aside, 0)
        target.complete = True  # just cleared
        target.result.rebuilt = why or "no checkpoint"
        targets.append(target)
    return targets


def replay(
    store: Store,
    ruleset: RuleSet,
    names: Sequence[str] | None = None,
    *,
    rebuild: bool = False,
    batch_size: int = BATCH_SIZE,
    until_seq: int | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
    project_dir: str | None = None,
) -> list[ReplayResult]:
    """Bring projections (all, or ``names``) up to date; see the module doc.

    ``until_seq`` stops at that position (for tests and tools). ``progress(done, total)`` is
    called after each batch; ``notice(text)`` receives rebuild notices. Raises
    :class:`ReplayFailed` after the others are done when a handler failed.
    """
    notice = notice or (lambda _: None)
    targets = _plan(store, select(ruleset, names), rebuild, notice, project_dir)
    if any(t.compiled.projection.table is not None for t in targets):
        _open_tables(store, targets, notice, project_dir)
    last = store.last_seq()
    end = last if until_seq is None else min(until_seq, last)
    first = min((t.expected for t in targets), default=end)
    total = max(end - first, 0)
    # The fold allocates many small dicts and no cycles: the cyclic collector would only rescan
    # them over and over (a tenth of a replay), so it is paused while the batches run.
    collecting = gc.isenabled()
    gc.disable()
    try:
        while True:
            active = [t for t in targets if not t.failed and t.folded < end]
            if not active:
                break
            after = min(t.folded for t in active)
            batch = store.scan(after, end, _types(active), batch_size)
            # a short batch means nothing else up to ``end`` concerns these projections
            scanned = int(batch[-1][0]) if len(batch) == batch_size else end
            _fold_batch(store, active, batch, scanned, end)
            if progress is not None:
                progress(scanned - first, total)
    finally:
        if collecting:
            gc.enable()
    for target in targets:
        done = not target.failed and target.expected >= end
        if target.to_swap and done:
            with store.write():
                snapshots.swap(store, target.table, target.compiled.name)
        if target.sink is not None:
            target.sink.finish(swap=done)
            target.result.table_error = target.sink.error
        target.result.position = target.expected
    results = [t.result for t in targets]
    if any(r.error is not None for r in results):
        raise ReplayFailed(results)
    failed = [r.table_error for r in results if r.table_error is not None]
    if failed:
        raise TablesNotKept(failed, results)
    return results


def _open_tables(
    store: Store, targets: list[_Target], notice: Notice, project_dir: str | None
) -> None:
    """Open the SQL tables (SQLAlchemy is imported only here, for projections that have one)."""
    from evflow.services.tables import open_sink

    for t in targets:
        if t.compiled.projection.table is None:
            continue
        fresh = t.to_swap and t.expected == 0
        t.sink = open_sink(store, t.compiled, t.table, t.expected, fresh, notice, project_dir)


_Work = tuple[_Target, str, Vars, Fold, int, str]


def _fold_batch(
    store: Store, active: list[_Target], batch: list[tuple[Any, ...]], batch_end: int, end: int
) -> None:
    # Phase 1, outside the lock: decode the events some target needs and compute their keys. A
    # target whose cache holds every row of its table (``complete``: a first build or a rebuild)
    # folds at once, as it reads (nothing to load, and each event freed while it is fresh); phase
    # 2 then only checks its checkpoint, and drops what it folded if another process moved it;
    # built aside, it writes every ASIDE_WRITE_EVERY events, holding what it folded until then.
    # The others note their work, and fold in phase 2 once their rows are loaded under the lock.
    # A target already at or past the batch's end (the batch starts where the target furthest
    # behind is) takes no part: its checkpoint would be set back, and the events refolded.
    active = [t for t in active if t.folded < batch_end]
    if not active:
        return
    routes: dict[str, list[tuple[_Target, Fold]]] = {}
    work: list[_Work] = []
    keys: dict[_Target, set[str]] = {t: set() for t in active}
    latest: dict[_Target, str] = {t: "" for t in active}
    eager = {t for t in active if t.complete}
    for t in eager:
        if t.dirty is None:
            t.dirty = set()
    loads = rows.loads
    decode = rows.bulk_decoder(len(batch))
    for seq, recorded, etype, body in batch:
        route = routes.get(etype)
        if route is None:
            route = []
            for t in active:
                fold = t.compiled.fold_for(etype)
                if fold is not None:
                    route.append((t, fold))
            routes[etype] = route
        if not route:
            continue
        event = decode(seq, recorded, body)
        for t, fold in route:
            if seq <= t.folded or t.failed:
                continue
            when = event["time"]
            if when > latest[t]:
                latest[t] = when
            v = Vars(event)
            key, why = t.compiled.key(v)
            if key is None:
                result = t.result
                result.skipped += 1
                if len(result.skip_examples) < MAX_EXAMPLES:
                    result.skip_examples.append(f"seq {seq}: {why}")
                continue
            if t not in eager:
                keys[t].add(key)
                work.append((t, key, v, fold, seq, etype))
                continue
            row = t.cache.get(key)
            if row is None:
                row = t.cache[key] = [None, 0]
            if t.sink is not None:
                if _fold_one(t, row, key, v, fold, seq, etype):
                    t.held += 1
                continue
            # _fold_one, inlined for a snapshot without a table: once per event of a rebuild
            state = row[0]
            if type(state) is str:
                state = row[0] = loads(state)
            v.set_state(state)  # also drops bindings a CEL key made with no state
            try:
                new = fold(state, v)
            except FoldFailure as exc:
                _fail(t, HandlerError(t.compiled.name, seq, etype, str(exc)))
                continue
            if new is SKIP:
                continue
            row[0] = new
            row[1] = seq
            if t.dirty is not None:  # set for an eager target that has not failed
                t.dirty.add(key)
            t.held += 1

    # Phase 2, in one write: check each checkpoint, load the rows not cached, fold, write.
    # ``t.cache`` maps key -> [state or None, seq] as committed (kept between batches while this
    # process is the one moving the checkpoint); ``dirty`` holds the keys this batch changed.
    tables: list[tuple[TableSink, dict[str, dict[str, Any] | None]]] = []
    writing: list[_Target] = []
    for t in active:
        if t in eager:
            hold = batch_end < end and batch_end - t.expected < ASIDE_WRITE_EVERY
            if hold and t.to_swap and t.dirty is not None:
                if latest[t] > t.latest:
                    t.latest = latest[t]
                t.folded = max(t.folded, batch_end)
                continue
        writing.append(t)
    if not writing:
        return
    with store.write():
        live: list[_Target] = []
        for t in writing:
            stored = snapshots.checkpoint(store, t.table)
            position = stored.position if stored is not None else 0
            if position != t.expected:  # another process moved it: follow, fold nothing here
                t.expected = t.folded = position
                t.cache = {}
                t.complete = False
                t.dirty = None
                t.values = {}
                t.held = 0
                t.copied = None  # the other process's copies: looked up when needed
                t.latest = ""
                if t.tracked_from is not None:
                    t.tracked_from = position
                if t in eager and t.failed:  # the failure was in events it does not own
                    t.failed = False
                    t.result.error = None
                continue
            if latest[t] > t.latest:
                t.latest = latest[t]
            if t in eager:
                t.result.applied += t.held
                t.held = 0
                live.append(t)
                continue
            cache = t.cache
            missing = [k for k in keys[t] if k not in cache]
            if missing and t.complete:
                for k in missing:
                    cache[k] = [None, 0]
            elif missing:
                found = snapshots.load_rows(store, t.table, missing)
                for k in missing:
                    hit = found.get(k)
                    cache[k] = [loads(hit[0]), hit[1]] if hit is not None else [None, 0]
            t.dirty = set()
            live.append(t)
        for t, key, v, fold, seq, etype in work:
            if t.dirty is None:
                continue
            if _fold_one(t, t.cache[key], key, v, fold, seq, etype):
                t.result.applied += 1
        for t in live:
            dirty = t.dirty
            if dirty is None:
                continue
            t.dirty = None
            cache = t.cache
            upserts: list[tuple[str, str, int]] = []
            deletes: list[str] = []
            try:
                for key in dirty:
                    state, seq = cache[key]
                    if state is None:
                        deletes.append(key)
                    else:
                        upserts.append((key, rows.dump_state(state), seq))
            except (TypeError, ValueError, RecursionError) as exc:
                t.failed = True
                t.result.error = HandlerError(
                    t.compiled.name, seq, "", f"row {key}: the state is not JSON: {exc}"
                )
                t.cache = {}
                t.complete = False
                continue
            snapshots.write_rows(store, t.table, upserts, deletes)
            snapshots.save_checkpoint(store, t.table, batch_end, t.hash)
            if batch_end // COPY_EVERY > t.expected // COPY_EVERY:
                _copy(store, t, batch_end)
            t.expected = t.folded = batch_end
            if t.sink is not None:
                tables.append((t.sink, {k: t.values[k] for k in dirty}))
                t.values = {}
            if _trim(cache, dirty, upserts):
                t.complete = False
    # The snapshot committed first, then each table (in its own database, outside evflow's
    # write lock: it may be the same SQLite file): a crash in between leaves the table behind,
    # which the next replay catches up from the snapshot (services/tables.py).
    for sink, changed in tables:
        sink.write(changed, batch_end)


def _fold_one(
    t: _Target, row: list[Any], key: str, v: Vars, fold: Fold, seq: int, etype: str
) -> bool:
    """Fold one event into its cached ``row``; True when it changed the row. A handler error
    fails the target: its cache (which holds part of the batch) and the batch's work are dropped."""
    state = row[0]
    if type(state) is str:  # kept as the text written (see CACHE_ROWS)
        state = row[0] = rows.loads(state)
    v.set_state(state)
    try:
        new = t.compiled.step(fold, state, v, seq, etype)
        if new is not SKIP and t.sink is not None:
            t.values[key] = _table_values(t, key, new, seq, etype)
    except HandlerError as exc:
        _fail(t, exc)
        return False
    if new is SKIP:
        return False
    row[0] = new
    row[1] = seq
    assert t.dirty is not None
    t.dirty.add(key)
    return True


def _fail(t: _Target, exc: HandlerError) -> None:
    t.failed = True
    t.result.error = exc
    t.cache = {}  # holds part of the failed batch
    t.complete = False
    t.dirty = None
    t.values = {}


def _table_values(
    t: _Target, key: str, state: dict[str, Any] | None, seq: int, etype: str
) -> dict[str, Any] | None:
    """The row as the table's columns take it; a value that does not fit is a handler error."""
    if state is None:
        return None
    spec = t.compiled.projection.table
    assert spec is not None
    try:
        values = row_values(spec, key, state, t.sink.dialect if t.sink else None)
    except ColumnMismatch as exc:
        raise HandlerError(t.compiled.name, seq, etype, str(exc)) from None
    values["seq"] = seq
    return values


def _copy(store: Store, t: _Target, position: int) -> None:
    """At the write that crossed a multiple of COPY_EVERY: a copy at ``position`` when the last
    one is COPY_ROWS_FACTOR x the rows (as cached) or more behind. A rebuild (from 0, or aside)
    also drops its predecessor's copies up to the next multiple, kept or not: the copies at or
    before a rebuild's checkpoint are its own (a resumed rebuild finds its last one)."""
    if t.copied is None:
        mark = snapshots.nearest_mark(store, t.compiled.name, t.hash, seq=t.expected)
        t.copied = mark.position if mark is not None else 0
    # the rows as cached: every row in a build from 0, those it touched in a catch-up
    due = t.copied == 0 or position - t.copied >= COPY_ROWS_FACTOR * len(t.cache)
    if t.to_swap or t.result.start == 0:
        window_end = (position // COPY_EVERY + 1) * COPY_EVERY
        keep = position if due else -1  # a copy kept here replaces the one at its position
        snapshots.drop_copies(store, t.compiled.name, t.copied, window_end, keep=keep)
    if due:
        _keep_copy(store, t, position)


def _keep_copy(store: Store, t: _Target, position: int) -> None:
    name = t.compiled.name
    previous = snapshots.nearest_mark(store, name, t.hash, seq=position - 1)
    since = previous.position if previous is not None else 0
    if t.tracked_from is not None and t.tracked_from <= since:
        # this process folded every event of the range (a few it saw before ``since`` are
        # within the previous copy's max_time, which is the latest up to ``since``)
        latest = t.latest
    else:
        latest = snapshots.max_time(store, since, position, _types([t]))
    if previous is not None and previous.max_time > latest:
        latest = previous.max_time
    snapshots.keep_copy(store, t.table, name, position, t.hash, latest)
    t.copied = position
    if t.tracked_from is not None:
        t.tracked_from = position
        t.latest = ""


def _trim(
    cache: dict[str, list[Any]], touched: set[str], written: list[tuple[str, str, int]]
) -> bool:
    """Keep the cache within its bounds (see CACHE_ROWS): the rows just touched move to the end
    (the most recent); past CACHE_ROWS the rows just written keep their text, not their state;
    past CACHE_TEXT_ROWS the rows at the front (touched longest ago) go. True when rows went."""
    if len(cache) <= CACHE_ROWS:
        return False
    for key in touched:
        cache[key] = cache.pop(key)
    for key, text, _ in written:
        cache[key][0] = text
    excess = len(cache) - CACHE_TEXT_ROWS
    if excess > 0:
        for key in list(islice(cache, excess)):
            del cache[key]
        return True
    return False


@dataclass(slots=True)
class Staleness:
    """How a snapshot that could not be brought up to date differs from the log and the rules."""

    behind: int = 0  # events recorded after the snapshot's position
    error: HandlerError | None = None
    outdated: list[str] = field(default_factory=list)  # built from an older definition
    table_error: EvflowError | None = None  # its SQL table was not brought up to date


def catch_up(
    store: Store, ruleset: RuleSet, names: Sequence[str], project_dir: str | None = None
) -> Staleness:
    """Bring ``names`` up to date for a read; what is left stale when a handler fails.

    Never raises for a handler error: the snapshot stays readable, and the caller says how far
    behind it is, and whether it was built from an older definition of the projection (the
    rebuild that the new definition needs is what failed).
    """
    try:
        replay(store, ruleset, names, project_dir=project_dir)
    except ReplayFailed as exc:
        last = store.last_seq()
        stored = snapshots.checkpoints(store)
        behind = max(last - (stored[n].position if n in stored else 0) for n in names)
        outdated = [
            n
            for n in names
            if n in stored
            and (p := ruleset.projection(n)) is not None
            and stored[n].definition != p.definition_hash
        ]
        return Staleness(behind, exc.errors[0], outdated)
    except TablesNotKept as exc:  # the snapshot is up to date; only its table is not
        return Staleness(table_error=exc.errors[0])
    return Staleness()
