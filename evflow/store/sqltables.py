"""SQL read-model tables through SQLAlchemy Core: a projection kept as a typed table in the evflow
database or in any database SQLAlchemy speaks (SQLite, PostgreSQL, MariaDB/MySQL, ...).

Imported only when a projection has a ``table:`` (SQLAlchemy costs ~200 ms to import), by the
replay service (:mod:`evflow.services.tables`) and by ``query --sql``.

- **Exactly once.** :meth:`SqlTable.write` puts rows and the table's own checkpoint (a row of
  ``evflow_checkpoints`` *in the target database*) in one transaction there, after checking,
  under a row lock, that the checkpoint is still where the caller left it.
- **Built aside.** A table for a new definition is built under ``NAME__evflow_new`` and put in
  place by :meth:`SqlTable.swap`: in one transaction where DDL is transactional (PostgreSQL,
  SQLite); on MariaDB/MySQL by one atomic ``RENAME TABLE`` and then the checkpoint's move, which
  :meth:`SqlTable.open` completes if a crash fell in between.
- **Types.** The column types of :data:`evflow.core.tables.COLUMN_TYPES`, per dialect:
  ``timestamp`` is TIMESTAMPTZ on PostgreSQL and UTC in a DATETIME(6) / SQLite DATETIME elsewhere;
  ``numeric`` is DECIMAL(65,30) on MariaDB/MySQL (its bare DECIMAL is DECIMAL(10,0)); ``json``
  is JSONB on PostgreSQL. The key is TEXT (VARCHAR(255) on MariaDB/MySQL, to be indexable).
- **Errors.** Driver errors become :class:`~evflow.errors.TableUnavailable` (exit 4) or
  :class:`~evflow.errors.TableFailed` in one place (:meth:`SqlTable._errors`), the URL's password
  masked.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from evflow.core.tables import TableSpec
from evflow.errors import TableFailed, TableUnavailable
from evflow.store.sqltargets import (
    MYSQL,
    Target,
    check_read,
    column_type,
    create_engine,
    first_line,
    json_type,
    resolve,
    unreachable,
)

CHECKPOINTS = "evflow_checkpoints"
ASIDE, OLD = "__evflow_new", "__evflow_old"
CHUNK = 500  # keys per DELETE ... IN (...)


@dataclass(frozen=True, slots=True)
class TableCheckpoint:
    table: str
    position: int  # seq of the last event the table reflects
    definition: str  # the table's definition hash (TableSpec.digest)


def _checkpoints(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        CHECKPOINTS,
        metadata,
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("projection", sa.String(255), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("definition", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )


# --------------------------------------------------------------------------------------------
# the table


class SqlTable:
    """One projection's table in its database: the live name, the aside name, checkpoints."""

    def __init__(self, projection: str, spec: TableSpec, target: Target, engine: sa.Engine) -> None:
        self.projection = projection
        self.spec = spec
        self.target = target
        self.engine = engine
        self.live = spec.name
        self.aside = spec.name + ASIDE
        self.old = spec.name + OLD
        self.dialect = engine.dialect.name
        self.checkpoints = _checkpoints(sa.MetaData())
        self.times = [name for name, kind in spec.columns if kind == "timestamp"]
        self._tables: dict[str, sa.Table] = {}

    @classmethod
    def open(
        cls,
        projection: str,
        spec: TableSpec,
        url: str,
        project_dir: Path | None = None,
        display: str | None = None,
    ) -> SqlTable:
        """Connect, create ``evflow_checkpoints`` if needed and finish an interrupted swap;
        :class:`TableUnavailable` when the database cannot be reached."""
        target = resolve(url, project_dir)
        if display is not None:
            target = Target(target.url, display, target.schema)
        engine = create_engine(target)
        table = cls(projection, spec, target, engine)
        try:
            with table._errors("open"):
                if target.schema and table.dialect == "postgresql":
                    schema = table._q(target.schema)
                    with engine.begin() as conn:
                        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                with engine.begin() as conn:
                    table.checkpoints.create(conn, checkfirst=True)
                table._recover()
        except BaseException:
            engine.dispose()
            raise
        return table

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Driver errors as evflow errors: unreachable (exit 4) or refused (exit 1)."""
        where = f"projection {self.projection}: table {self.live}"
        try:
            yield
        except sa.exc.DBAPIError as exc:
            if unreachable(exc):
                raise TableUnavailable(
                    f"{where}: database {self.target.shown} is unavailable: {first_line(exc)}",
                    hint=f"the snapshot went on; when it is back: evflow replay {self.projection}",
                ) from None
            raise TableFailed(f"{where} ({doing}): {first_line(exc)}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise TableFailed(f"{where} ({doing}): {first_line(exc)}") from None

    def _q(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote_identifier(name)

    def _has(self, conn: sa.Connection, name: str) -> bool:
        return sa.inspect(conn).has_table(name)

    def _recover(self) -> None:
        """Complete a MariaDB/MySQL swap cut short between its RENAME and the checkpoint's move;
        drop what a swap left behind."""
        cp = self.checkpoints
        with self.engine.begin() as conn:
            names = {
                r[0]
                for r in conn.execute(
                    sa.select(cp.c.table_name).where(cp.c.table_name.in_([self.live, self.aside]))
                )
            }
            has_old = self._has(conn, self.old)
            if self.aside in names and not self._has(conn, self.aside):
                if self._has(conn, self.live) and (has_old or self.live not in names):
                    self._move_checkpoint(conn)
                else:
                    conn.execute(self._forget(self.aside))
        if has_old:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(self.old)}")

    # -- state

    def checkpoint(self, which: str) -> TableCheckpoint | None:
        """The checkpoint of the table ``which``; None when there is no such table."""
        cp = self.checkpoints
        with self._errors("read its checkpoint"), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(cp.c.position, cp.c.definition).where(cp.c.table_name == which)
            ).first()
            if row is None or not self._has(conn, which):
                return None
        return TableCheckpoint(which, int(row[0]), row[1])

    def exists(self, which: str) -> bool:
        with self._errors("look it up"), self.engine.connect() as conn:
            return self._has(conn, which)

    # -- building

    def _table(self, physical: str, fresh: bool = False) -> sa.Table:
        found = self._tables.get(physical)
        if found is not None and not fresh:
            return found
        # Constraint and index names are per schema on PostgreSQL and SQLite: a token per build
        # keeps those of a table built aside from clashing with the live table's.
        token = uuid.uuid4().hex[:6]
        base = self.spec.name[:40]
        columns: list[Any] = [
            sa.Column("key", sa.Text().with_variant(sa.String(255), *MYSQL), nullable=False),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            *(sa.Column(name, column_type(kind)) for name, kind in self.spec.columns),
        ]
        if self.spec.state_column:
            columns.append(sa.Column(self.spec.state_column, json_type()))
        table = sa.Table(
            physical,
            sa.MetaData(),
            *columns,
            sa.PrimaryKeyConstraint("key", name=f"{base}_pk_{token}"),
        )
        for i, index in enumerate(self.spec.indexes):
            sa.Index(f"{base}_ix{i}_{token}", *(table.c[c] for c in index))
        self._tables[physical] = table
        return table

    def create(self, which: str, definition: str) -> None:
        """A new, empty table under ``which`` (replacing what held that name), at position 0.

        The checkpoint row comes first: where DDL commits by itself (MariaDB/MySQL), a crash
        then leaves a checkpoint without its table (which :meth:`checkpoint` treats as no
        table), never a table that looks like someone else's."""
        with self._errors("create it"):
            with self.engine.begin() as conn:
                conn.execute(self._forget(which))
                self._insert_checkpoint(conn, which, 0, definition)
                if self.dialect not in MYSQL:  # transactional DDL: one transaction
                    self._create(conn, which)
                    return
            with self.engine.begin() as conn:
                self._create(conn, which)

    def _create(self, conn: sa.Connection, which: str) -> None:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(which)}")
        self._table(which, fresh=True).create(conn)

    def foreign(self) -> bool:
        """Is there a table under the live name that evflow does not keep?"""
        with self._errors("look it up"), self.engine.connect() as conn:
            if not self._has(conn, self.live):
                return False
            cp = self.checkpoints
            found = conn.execute(sa.select(cp.c.position).where(cp.c.table_name == self.live))
            return found.first() is None

    def drop(self, which: str) -> None:
        with self._errors("drop it"), self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(which)}")
            conn.execute(self._forget(which))

    # -- writing

    def write(
        self,
        which: str,
        upserts: list[dict[str, Any]],
        keys: Iterable[str],
        expected: int,
        position: int,
        definition: str,
    ) -> int | None:
        """Remove the rows of ``keys``, insert ``upserts`` (column values with ``key`` and
        ``seq``) and move the checkpoint from ``expected`` to ``position``, in one transaction.
        None when done; the stored position when another process had moved it (nothing done)."""
        table = self._table(which)
        cp = self.checkpoints
        with self._errors("write"), self.engine.begin() as conn:
            row = conn.execute(
                sa.select(cp.c.position).where(cp.c.table_name == which).with_for_update()
            ).first()
            stored = None if row is None else int(row[0])
            if (stored or 0) != expected:
                return stored or 0
            listed = list(keys)
            for start in range(0, len(listed), CHUNK):
                chunk = listed[start : start + CHUNK]
                conn.execute(table.delete().where(table.c.key.in_(chunk)))
            if upserts:
                conn.execute(table.insert(), self._bind(upserts))
            if stored is None:
                self._insert_checkpoint(conn, which, position, definition)
            else:
                conn.execute(
                    cp.update()
                    .where(cp.c.table_name == which)
                    .values(position=position, definition=definition, updated_at=_now())
                )
        return None

    def load(
        self, which: str, rows: Iterable[dict[str, Any]], position: int, definition: str
    ) -> None:
        """Fill the new, empty table ``which`` with ``rows`` and set its checkpoint to
        ``position``, in one transaction."""
        table = self._table(which)
        cp = self.checkpoints
        with self._errors("write"), self.engine.begin() as conn:
            chunk: list[dict[str, Any]] = []
            for values in rows:
                chunk.append(values)
                if len(chunk) >= 5000:
                    conn.execute(table.insert(), self._bind(chunk))
                    chunk = []
            if chunk:
                conn.execute(table.insert(), self._bind(chunk))
            conn.execute(
                cp.update()
                .where(cp.c.table_name == which)
                .values(position=position, definition=definition, updated_at=_now())
            )

    def _bind(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Values as the dialect takes them: UTC without a zone where there is no zone type."""
        if not self.times or self.dialect == "postgresql":
            return rows
        out = []
        for values in rows:
            values = dict(values)
            for name in self.times:
                if values.get(name) is not None:
                    values[name] = values[name].replace(tzinfo=None)
            out.append(values)
        return out

    def _insert_checkpoint(
        self, conn: sa.Connection, which: str, position: int, definition: str
    ) -> None:
        conn.execute(
            self.checkpoints.insert().values(
                table_name=which,
                projection=self.projection,
                position=position,
                definition=definition,
                updated_at=_now(),
            )
        )

    def _forget(self, which: str) -> sa.Delete:
        return self.checkpoints.delete().where(self.checkpoints.c.table_name == which)

    def _move_checkpoint(self, conn: sa.Connection) -> None:
        conn.execute(self._forget(self.live))
        cp = self.checkpoints
        conn.execute(
            cp.update().where(cp.c.table_name == self.aside).values(table_name=self.live)
        )

    # -- swapping

    def swap(self) -> None:
        """Put the table built aside in the live table's place: a reader sees one or the other."""
        q = self._q
        with self._errors("swap it in"):
            if self.dialect in MYSQL:
                # DDL commits by itself here: one atomic RENAME TABLE, then the checkpoint's
                # move (open() completes it after a crash in between), then the old one's drop
                with self.engine.connect() as conn:
                    if self._has(conn, self.live):
                        conn.exec_driver_sql(
                            f"RENAME TABLE {q(self.live)} TO {q(self.old)},"
                            f" {q(self.aside)} TO {q(self.live)}"
                        )
                    else:
                        conn.exec_driver_sql(f"RENAME TABLE {q(self.aside)} TO {q(self.live)}")
                with self.engine.begin() as conn:
                    self._move_checkpoint(conn)
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {q(self.old)}")
            else:
                with self.engine.begin() as conn:  # transactional DDL: all of it or nothing
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {q(self.live)}")
                    conn.exec_driver_sql(f"ALTER TABLE {q(self.aside)} RENAME TO {q(self.live)}")
                    self._move_checkpoint(conn)
        self._tables.pop(self.live, None)
        self._tables.pop(self.aside, None)

    # -- reading

    def read_only(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """One read statement in a read-only transaction: (column names, rows)."""
        text = check_read(sql)
        with self._errors("query"), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = ON")
            elif self.dialect == "postgresql":
                conn = conn.execution_options(postgresql_readonly=True)
            elif self.dialect in MYSQL:
                conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
            try:
                result = conn.exec_driver_sql(text)
                columns = list(result.keys())
                rows = [tuple(r) for r in result]
            finally:
                conn.rollback()
        return columns, rows


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
