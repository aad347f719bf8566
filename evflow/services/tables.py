"""Keeping a projection's SQL table in step with its JSON snapshot, during a replay.

The table mirrors the snapshot: the replay folds each batch once, commits the snapshot's rows
(in the evflow database), then writes the same rows' typed values to the table together with the
table's own checkpoint, in one transaction in the table's database
(:meth:`evflow.store.sqltables.SqlTable.write`). So after a crash anywhere the table holds
exactly the snapshot as of its own checkpoint, and it is never ahead of the snapshot by more than
what it already reflects: rows are written as states, never as increments.

Before the first batch, :func:`open_sink` brings the table to the snapshot's position:

- **behind** (a crash between the two commits, or a database that was down while the snapshot
  went on): the keys that the events in between touch are copied from the snapshot (their rows,
  or their absence), with the checkpoint, in one transaction;
- **no table yet**, or **a new table definition** (columns, indexes, ... or the fold itself):
  a table is built aside (``NAME__evflow_new``) from the snapshot's rows and swapped in, so a
  reader sees the old table or the new one, never half of one; a first table is built in place;
- the snapshot being **rebuilt** (``--rebuild``, a new fold): the table is rebuilt aside beside it,
  batch by batch, and both are swapped in at the end.

A table that cannot be reached or written records its error on the sink; the snapshot and the
other projections go on, and the replay ends with exit 4 (:class:`evflow.errors.TableUnavailable`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evflow.core.projections import CompiledProjection, Vars
from evflow.core.tables import ColumnMismatch, MissingVariable, dialect_of, expand, row_values
from evflow.errors import EvflowError, TableFailed, UsageError
from evflow.store import rows, snapshots
from evflow.store.sqltables import SqlTable
from evflow.store.sqltargets import json_value

if TYPE_CHECKING:
    from evflow.core.rules import Projection
    from evflow.store.interface import Store

SCAN = 10_000  # events per read while finding the keys a catch-up copies

Notice = Callable[[str], None]


class TableSink:
    """One projection's table during a replay: which physical table is written, from where."""

    def __init__(self, compiled: CompiledProjection) -> None:
        projection = compiled.projection
        assert projection.table is not None
        self.compiled = compiled
        self.name = projection.name
        self.spec = projection.table
        self.definition = self.spec.digest(projection.definition_hash)
        self.table: SqlTable | None = None
        self.which = self.spec.name
        self.expected = 0  # the table checkpoint this process believes is stored
        self.ahead = 0  # batches ending at or before this are in the table already
        self.swap_at_end = False
        self.error: EvflowError | None = None
        self.dialect: str | None = None  # the table database's backend, for its limits

    # -- planning

    def open(
        self, store: Store, snapshot: str, position: int, fresh: bool, notice: Notice,
        project_dir: str | None,
    ) -> None:  # fmt: skip
        """Connect and bring the table to the snapshot ``snapshot`` at ``position`` (``fresh``:
        the snapshot is rebuilt from the start, aside)."""
        try:
            url = expand(self.spec.database) if self.spec.database else store.tables_url
            display = None if self.spec.database else store.display_url
            self.dialect = dialect_of(url)
        except MissingVariable as exc:
            self.error = TableFailed(
                f"projection {self.name}: table {self.spec.name}: database"
                f" {self.spec.database}: {exc}",
                hint=f"set it, then run: evflow replay {self.name}",
            )
            return
        try:
            self.table = SqlTable.open(
                self.name, self.spec, url, Path(project_dir) if project_dir else None, display
            )
            if snapshot != self.name:
                self._aside(store, snapshot, position, fresh)
            else:
                self._live(store, position, notice)
        except EvflowError as exc:
            self.error = exc

    def _aside(self, store: Store, snapshot: str, position: int, fresh: bool) -> None:
        table = self._table()
        self.which, self.swap_at_end = table.aside, True
        found = table.checkpoint(table.aside)
        if fresh or found is None or found.definition != self.definition:
            table.create(table.aside, self.definition)
            self.expected = 0
            if position:
                self._copy(store, snapshot, table.aside, position)
        elif found.position < position:
            self._catch_up(store, snapshot, found.position, position)
        else:
            self.expected = self.ahead = found.position

    def _live(self, store: Store, position: int, notice: Notice) -> None:
        table = self._table()
        if table.foreign():
            raise TableFailed(
                f"projection {self.name}: a table {table.live} that evflow does not keep already"
                f" exists in {table.target.shown}",
                hint="choose another table.name, or drop that table",
            )
        if table.exists(table.aside):  # left by a rebuild of an older definition
            table.drop(table.aside)
        found = table.checkpoint(table.live)
        if found is None:  # a first table: nothing to hide
            table.create(table.live, self.definition)
            self.expected = 0
            if position:
                self._copy(store, self.name, table.live, position)
        elif found.definition != self.definition:
            notice(
                f"projection {self.name}: table {table.live}: its definition changed;"
                " rebuilding it aside from the snapshot"
            )
            table.create(table.aside, self.definition)
            self._copy(store, self.name, table.aside, position)
            table.swap()
        elif found.position < position:
            self.expected = found.position
            self._catch_up(store, self.name, found.position, position)
        else:
            self.expected = self.ahead = found.position

    def _table(self) -> SqlTable:
        assert self.table is not None
        return self.table

    def _copy(self, store: Store, snapshot: str, which: str, position: int) -> None:
        """Load every row of the snapshot (at ``position``) into the new table ``which``."""
        values = (self._values(key, rows.loads(state), seq) for key, state, seq in
                  snapshots.rows(store, snapshot))  # fmt: skip
        self._table().load(which, values, position, self.definition)
        self.expected = position

    def _catch_up(self, store: Store, snapshot: str, start: int, end: int) -> None:
        """Copy from the snapshot the rows of the keys that the events in ``(start, end]``
        touch (their state, or their absence), and move the checkpoint, in one transaction."""
        keys = set(self._keys(store, start, end))
        found = snapshots.load_rows(store, snapshot, keys)
        upserts = [self._values(k, rows.loads(state), seq) for k, (state, seq) in found.items()]
        moved = self._table().write(self.which, upserts, keys, start, end, self.definition)
        self.expected = end if moved is None else moved

    def _keys(self, store: Store, start: int, end: int) -> Iterator[str]:
        compiled = self.compiled
        types = sorted(p for p, _ in compiled.projection.handlers)
        if any(c in p for p in types for c in "*?["):
            types = []
        after = start
        while after < end:
            batch = store.scan(after, end, types, SCAN)
            decode = rows.bulk_decoder(len(batch))
            for seq, recorded, etype, body in batch:
                if compiled.fold_for(etype) is None:
                    continue
                key, _ = compiled.key(Vars(decode(seq, recorded, body)))
                if key is not None:
                    yield key
            after = int(batch[-1][0]) if len(batch) == SCAN else end

    def _values(self, key: str, state: Mapping[str, Any], seq: int) -> dict[str, Any]:
        try:
            values = row_values(self.spec, key, state, self.dialect)
        except ColumnMismatch as exc:
            raise TableFailed(
                f"projection {self.name}: event seq {seq} (row {key}): {exc}",
                hint="change the column's type, or the handler, then run: evflow replay "
                + self.name,
            ) from None
        values["seq"] = seq
        return values

    # -- during the replay

    def write(self, changed: Mapping[str, dict[str, Any] | None], batch_end: int) -> None:
        """After the snapshot committed a batch: the same rows to the table, with its
        checkpoint (``changed``: key -> column values, or None for a deleted row)."""
        if self.error is not None or self.table is None or batch_end <= self.ahead:
            return
        upserts = [v for v in changed.values() if v is not None]
        try:
            moved = self.table.write(
                self.which, upserts, changed, self.expected, batch_end, self.definition
            )
        except EvflowError as exc:
            self.error = exc
            return
        if moved is None:
            self.expected = batch_end
        else:  # another replay moved it: that one writes what it folded
            self.expected = self.ahead = moved

    def finish(self, swap: bool) -> None:
        """Swap the table built aside in (when its snapshot was), and let go of the database."""
        try:
            if swap and self.swap_at_end and self.error is None and self.table is not None:
                try:
                    self.table.swap()
                except EvflowError as exc:
                    self.error = exc
        finally:
            if self.table is not None:
                self.table.close()


def open_sink(
    store: Store,
    compiled: CompiledProjection,
    snapshot: str,
    position: int,
    fresh: bool,
    notice: Notice,
    project_dir: str | None,
) -> TableSink:
    """The sink of a projection that has a table, ready for the batch after ``position``; its
    ``error`` is set when the table cannot be kept (the replay goes on without it)."""
    sink = TableSink(compiled)
    sink.open(store, snapshot, position, fresh, notice, project_dir)
    return sink


def read_only(
    store: Store, projection: Projection, sql: str, project_dir: str | None
) -> tuple[list[str], list[list[Any]]]:
    """Run one read statement against the projection's table: column names, and rows of
    JSON-ready values (numbers, text, times as RFC 3339)."""
    spec = projection.table
    if spec is None:
        raise UsageError(
            f"projection {projection.name} has no table: --sql reads a projection's SQL table",
            hint="give the projection a table: section (see docs/rules.md), or drop --sql",
        )
    try:
        url = expand(spec.database) if spec.database else store.tables_url
    except MissingVariable as exc:
        raise TableFailed(f"projection {projection.name}: table {spec.name}: {exc}") from None
    display = None if spec.database else store.display_url
    where = Path(project_dir) if project_dir else None
    table = SqlTable.open(projection.name, spec, url, where, display)
    try:
        columns, found = table.read_only(sql)
    finally:
        table.close()
    return columns, [[json_value(v) for v in row] for row in found]
