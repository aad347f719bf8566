"""Where SQL read-model tables live: database URLs, SQLAlchemy engines, column types per
dialect, driver errors, and values as JSON output shows them (see :mod:`evflow.store.sqltables`).

Imported only when a projection has a ``table:``. evflow's URL forms are accepted besides
SQLAlchemy's: a SQLite path (relative to the project folder), ``postgresql://…?schema=S`` (evflow's
``schema`` parameter: the schema is created and put on the search path), ``mysql://`` and
``mariadb://`` (PyMySQL, ``utf8mb4``); without ``+driver`` the drivers of evflow's extras are used.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from evflow.core.text import redact, redact_text
from evflow.errors import MissingExtra, UsageError
from evflow.store import sqlite_path

BUSY_TIMEOUT_S = 120
CONNECT_TIMEOUT_S = 10
MYSQL = ("mysql", "mariadb")


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


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return redact_text(" ".join(str(orig).split()) or type(orig).__name__)


_GONE = re.compile(
    r"connect|connection|unable to open database|timeout|timed out|server closed|"
    r"name or service|no route|network|gone away|lost",
    re.I,
)


def unreachable(exc: sa.exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = orig.args[0] if orig is not None and orig.args else None
    if isinstance(code, int) and 2000 <= code < 2100:  # MySQL client errors (can't connect, ...)
        return True
    return bool(_GONE.search(str(orig)))


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
