"""A projection's SQL table: its definition and the typed values of a row (pure, no SQL).

The rule file's ``table:`` section becomes a :class:`TableSpec`; the fold checks every new state
against it (:func:`row_values`) so that a value which does not fit its column is a handler error
naming the event, while the SQL itself lives in ``evflow/store/sqltables.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from evflow.core.structs import dataclass

# type name -> what a value must be (for messages and ``rules schema``)
COLUMN_TYPES: dict[str, str] = {
    "text": "a string",
    "integer": "an integer between -2147483648 and 2147483647",
    "bigint": "an integer between -2^63 and 2^63-1",
    "numeric": "a number (exact decimal in the table)",
    "float": "a number (double precision)",
    "boolean": "true or false",
    "timestamp": "an RFC 3339 time with an offset",
    "date": "a date YYYY-MM-DD",
    "json": "any JSON value",
}
COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")  # room for the aside suffix in 64
RESERVED_COLUMNS = ("key", "seq")
MAX_KEY = 255  # characters: MySQL/MariaDB index a VARCHAR(255) key
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class TableSpec:
    """The ``table:`` section of a projection, as written (``database`` not yet expanded)."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (column = state field, type)
    database: str | None = None  # None: the evflow database
    state_column: str | None = None
    indexes: tuple[tuple[str, ...], ...] = ()

    def digest(self, projection_hash: str) -> str:
        """The table's definition hash: the fold's, plus the table's own layout. ``database``
        counts as written (``${READ_DB}``), so a password or a moved server is no change."""
        import hashlib  # lazily: rule loading is on emit's path, and only replay needs this

        text = json.dumps(
            [projection_hash, self.name, self.columns, self.database, self.state_column,
             self.indexes],
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_table_name(projection: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", projection)[:48]


class MissingVariable(ValueError):
    """``${NAME}`` names an environment variable that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(f"environment variable {name} is not set")
        self.name = name


def expand(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every ``${NAME}`` replaced by that environment variable."""
    env = os.environ if environ is None else environ

    def one(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if value is None:
            raise MissingVariable(match.group(1))
        return value

    return ENV_REF.sub(one, text)


class ColumnMismatch(ValueError):
    """A state value that does not fit its column's type."""

    def __init__(self, column: str, kind: str, value: Any, why: str | None = None) -> None:
        shown = json.dumps(value, ensure_ascii=False, default=str)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        why = why or f"is not {COLUMN_TYPES.get(kind, kind)}"
        super().__init__(f"table column {column} ({kind}): {shown} {why}")
        self.column = column
        self.kind = kind


def _integer(bound: int) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and -bound <= v < bound:
            return v
        raise TypeError

    return check


def _number(v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    raise TypeError


def _float(v: Any) -> float:
    return float(_number(v))


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise TypeError


def _boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise TypeError


def _timestamp(v: Any) -> dt.datetime:
    if isinstance(v, str) and len(v) >= 19 and v[10] in "Tt ":
        t = dt.datetime.fromisoformat(v)
        if t.tzinfo is not None:
            return t.astimezone(dt.UTC)
    raise TypeError


def _date(v: Any) -> dt.date:
    if isinstance(v, str) and len(v) == 10:
        return dt.date.fromisoformat(v)
    raise TypeError


def _json(v: Any) -> Any:
    return v


CONVERT: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "integer": _integer(2**31),
    "bigint": _integer(2**63),
    "numeric": _number,
    "float": _float,
    "boolean": _boolean,
    "timestamp": _timestamp,
    "date": _date,
    "json": _json,
}


def dialect_of(url: str) -> str:
    """The backend family of a table database URL: ``postgresql``, ``mysql`` (MariaDB too),
    ``sqlite`` (a path), or the URL's own dialect name."""
    if "://" not in url:
        return "sqlite"
    name = url.partition("://")[0].partition("+")[0].lower()
    return {"postgres": "postgresql", "mariadb": "mysql"}.get(name, name)


MYSQL_TEXT_BYTES = 65_535  # a MariaDB/MySQL TEXT column
MYSQL_NUMERIC = 10**35  # DECIMAL(65,30): 35 digits before the point


def _has_nul(value: Any) -> bool:
    """A NUL character anywhere in ``value`` (PostgreSQL's TEXT and JSONB cannot hold one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _backend_refuses(dialect: str | None, kind: str, value: Any) -> str | None:
    """Why the table's backend would refuse a value that passed its type's check (the write
    would fail after the snapshot moved on, so it is caught with the type's checks), else None."""
    if dialect == "postgresql" and kind in ("text", "json") and _has_nul(value):
        return "holds a NUL character, which PostgreSQL cannot store"
    if dialect == "mysql":
        if kind == "numeric" and abs(value) >= MYSQL_NUMERIC:
            return "is beyond DECIMAL(65,30) on MariaDB/MySQL (35 digits before the point)"
        if (
            kind == "text"
            and len(value) * 4 > MYSQL_TEXT_BYTES
            and len(value.encode()) > MYSQL_TEXT_BYTES
        ):
            return f"is longer than a MariaDB/MySQL TEXT column holds ({MYSQL_TEXT_BYTES} bytes)"
    return None


def row_values(
    spec: TableSpec, key: str, state: Mapping[str, Any], dialect: str | None = None
) -> dict[str, Any]:
    """The typed column values of a row (``key`` and the state column included, not ``seq``);
    raises :class:`ColumnMismatch` for the first value that does not fit, in the table's
    backend when ``dialect`` (:func:`dialect_of`) names it."""
    if len(key) > MAX_KEY:
        raise ColumnMismatch("key", "text", key)
    values: dict[str, Any] = {"key": key}
    if dialect is not None and (why := _backend_refuses(dialect, "text", key)):
        raise ColumnMismatch("key", "text", key, why)
    for column, kind in spec.columns:
        value = state.get(column)
        if value is None:
            values[column] = None
            continue
        try:
            values[column] = CONVERT[kind](value)
        except (TypeError, ValueError, OverflowError):
            raise ColumnMismatch(column, kind, value) from None
        if dialect is not None and (why := _backend_refuses(dialect, kind, value)):
            raise ColumnMismatch(column, kind, value, why)
    if spec.state_column is not None:
        if dialect is not None and (why := _backend_refuses(dialect, "json", state)):
            raise ColumnMismatch(spec.state_column, "json", dict(state), why)
        values[spec.state_column] = dict(state)
    return values
