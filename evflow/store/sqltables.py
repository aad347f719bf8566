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
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from evflow.core.tables import TableSpec
from evflow.core.text import redact, redact_text
from evflow.errors import MissingExtra, TableFailed, TableUnavailable, UsageError
from evflow.store import sqlite_path

CHECKPOINTS = "evflow_checkpoints"
ASIDE, OLD = "__evflow_new", "__evflow_old"
CHUNK = 500  # keys per DELETE ... IN (...)
BUSY_TIMEOUT_S = 120
CONNECT_TIMEOUT_S = 10
MYSQL = ("mysql", "mariadb")


@dataclass(frozen=True, slots=True)
class TableCheckpoint:
    table: str
    position: int  # seq of the last event the table reflects
    definition: str  # the table's definition hash (TableSpec.digest)


# --------------------------------------------------------------------------------------------
# URLs and engines


@dataclass(frozen=True, slots=True)
class Target:
    """Where a table lives: the SQLAlchemy URL, the PostgreSQL schema, the URL as printed."""

    url: str
    shown: str
    schema: str | None = None


def shown(url: str) -> str:
    """``url`` as it may be printed: no password in the user part nor as a parameter."""
    parts = urlsplit(redact(url))
    if not parts.query:
        return urlunsplit(parts)
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="*")))


def resolve(url: str, project_dir: Path | None = None) -> Target:
    """evflow's URL forms (a SQLite path relative to the project, ``postgresql://…?schema=S``,
    ``mysql://``/``mariadb://``) as SQLAlchemy URLs with the drivers evflow's extras install
    (psycopg, PyMySQL); an explicit ``dialect+driver`` is kept."""
    if "://" not in url or url.startswith("sqlite:"):
        path = sqlite_path(url, project_dir)
        return Target(f"sqlite:///{path}", shown(url))
    parts = urlsplit(url)
    dialect, _, driver = parts.scheme.lower().partition("+")
    params = parse_qsl(parts.query, keep_blank_values=True)
    schema = None
    if dialect in ("postgresql", "postgres"):
        dialect, driver = "postgresql", driver or "psycopg"
        schema = next((v for k, v in params if k == "schema"), None) or None
        params = [(k, v) for k, v in params if k != "schema"]
    elif dialect in MYSQL:
        driver = driver or "pymysql"
        if driver == "pymysql" and not any(k == "charset" for k, _ in params):
            params.append(("charset", "utf8mb4"))
    scheme = f"{dialect}+{driver}" if driver else dialect
    query = urlencode(params, quote_via=quote)
    return Target(urlunsplit(parts._replace(scheme=scheme, query=query)), shown(url), schema)


def _sqlite_events(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # SQLAlchemy emits BEGIN below: DDL is transactional too
        dbapi.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        if dbapi.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            dbapi.execute("PRAGMA journal_mode = WAL")

    @sa.event.listens_for(engine, "begin")
    def begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock at once instead of upgrading a read lock later, which
        # could deadlock against evflow's own writes to the same file
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(target: Target) -> sa.Engine:
    args: dict[str, Any] = {}
    if target.url.startswith("sqlite"):
        args["timeout"] = BUSY_TIMEOUT_S
    elif target.url.startswith("postgresql"):
        args["connect_timeout"] = CONNECT_TIMEOUT_S
        if target.schema:
            args["options"] = f"-c search_path={target.schema}"
    elif target.url.startswith(MYSQL):
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        # no pool: a replay opens a few connections, and none outlives the command
        engine = sa.create_engine(target.url, connect_args=args, poolclass=sa.pool.NullPool)
    except ModuleNotFoundError as exc:
        extra = "mysql" if target.url.startswith(MYSQL) else "postgres"
        raise MissingExtra(exc.name or "the database driver", extra) from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise UsageError(f"table database {target.shown}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _sqlite_events(engine)
    return engine


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return redact_text(" ".join(str(orig).split()) or type(orig).__name__)


_GONE = re.compile(
    r"connect|connection|unable to open database|timeout|timed out|server closed|"
    r"name or service|no route|network|gone away|lost",
    re.I,
)


def _unreachable(exc: sa.exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = orig.args[0] if orig is not None and orig.args else None
    if isinstance(code, int) and 2000 <= code < 2100:  # MySQL client errors (can't connect, ...)
        return True
    return bool(_GONE.search(str(orig)))


# --------------------------------------------------------------------------------------------
# types


def column_type(kind: str) -> sa.types.TypeEngine[Any]:
    if kind == "text":
        return sa.Text()
    if kind == "integer":
        return sa.Integer()
    if kind == "bigint":
        return sa.BigInteger()
    if kind == "numeric":
        return sa.Numeric().with_variant(mysql.DECIMAL(65, 30), *MYSQL)
    if kind == "float":
        return sa.Double()
    if kind == "boolean":
        return sa.Boolean()
    if kind == "timestamp":
        return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MYSQL)
    if kind == "date":
        return sa.Date()
    return json_type()


def json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


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
            if _unreachable(exc):
                raise TableUnavailable(
                    f"{where}: database {self.target.shown} is unavailable: {_first_line(exc)}",
                    hint=f"the snapshot went on; when it is back: evflow replay {self.projection}",
                ) from None
            raise TableFailed(f"{where} ({doing}): {_first_line(exc)}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise TableFailed(f"{where} ({doing}): {_first_line(exc)}") from None

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
        cp = self.checkpoints
        with self._errors("read its checkpoint"), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(cp.c.position, cp.c.definition).where(cp.c.table_name == which)
            ).first()
        return None if row is None else TableCheckpoint(which, int(row[0]), row[1])

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
        """A new, empty table under ``which`` (replacing what held that name), at position 0."""
        with self._errors("create it"), self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(which)}")
            self._table(which, fresh=True).create(conn)
            conn.execute(self._forget(which))
            self._insert_checkpoint(conn, which, 0, definition)

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


_MORE = re.compile(r";\s*\S")
_READS = ("select", "with", "values", "table", "show", "describe", "desc")


def check_read(sql: str) -> str:
    """One read statement, or UsageError. (The read-only transaction is the real guard; this
    gives a clear message for the obvious cases.)"""
    text = sql.strip().rstrip(";").strip()
    first = text.split(None, 1)[0].lower().lstrip("(") if text else ""
    if first not in _READS:
        raise UsageError(
            f"--sql: only a read (SELECT, WITH, VALUES), got {first.upper() or 'nothing'}",
            hint="evflow replay keeps the table; it is read-only for --sql",
        )
    if _MORE.search(text):
        raise UsageError("--sql: one statement at a time")
    return text


def json_value(value: Any) -> Any:
    """A column value as JSON output shows it."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value
