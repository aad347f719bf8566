"""A projection's ``table:`` section: YAML nodes -> :class:`~evflow.core.tables.TableSpec`.

Split from :mod:`evflow.rulefiles.builder`, whose reporting it uses: every problem is located at
the key or value it is about, as for the rest of a rule file. The database URL is checked for
shape only (no driver is imported: rule loading is on ``emit``'s path); a URL that holds
``${NAME}`` is checked as expanded when the variables are set, and at replay otherwise.
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import urlsplit

from evflow.core.tables import (
    COLUMN_NAME,
    COLUMN_TYPES,
    RESERVED_COLUMNS,
    TABLE_NAME,
    MissingVariable,
    TableSpec,
    default_table_name,
    expand,
)
from evflow.errors import Problem
from evflow.rulefiles.yamltree import Node

TABLE_KEYS = ("name", "database", "columns", "state_column", "indexes")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9]*(\+[A-Za-z0-9_]+)?")


class Reporter(Protocol):
    problems: list[Problem]

    def error(self, node: Node, message: str) -> None: ...

    def fields(self, node: Node, what: str, allowed: tuple[str, ...] | None) -> dict | None: ...

    def text(self, node: Node | None, what: str) -> str: ...


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a table's database, or None."""
    scheme, sep, _ = url.partition("://")
    if not sep or not SCHEME.fullmatch(scheme):
        return (
            f"database must be a URL such as postgresql://user@host/db, mysql://user@host/db"
            f" or sqlite:///path/file.db, got '{url}'"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"database: {exc} in '{url}'"
    if scheme.split("+")[0].lower() != "sqlite" and not parts.hostname and not parts.path:
        return f"database: '{url}' names no host and no database"
    return None


def build_table(b: Reporter, node: Node, projection: str) -> TableSpec | None:
    """The spec of one ``table:`` section, or None after reporting its problems."""
    before = len(b.problems)
    fields = b.fields(node, "table", TABLE_KEYS)
    if fields is None:
        return None
    name = _name(b, fields.get("name"), node, projection)
    database = _database(b, fields.get("database"))
    columns = _columns(b, fields.get("columns"))
    state_column = None
    if "state_column" in fields:
        value = fields["state_column"]
        state_column = b.text(value, "state_column")
        if not COLUMN_NAME.fullmatch(state_column) or state_column in RESERVED_COLUMNS:
            b.error(value, f"state_column: bad column name '{state_column}'{_NAMES}")
        elif state_column in dict(columns):
            b.error(value, f"state_column '{state_column}' is also one of the columns")
    if "columns" not in fields and state_column is None:
        b.error(node, "table needs 'columns' (state fields mapped to types) or a 'state_column'")
    elif "columns" in fields and not fields["columns"].value and state_column is None:
        b.error(fields["columns"], "columns needs at least one column (or give a state_column)")
    indexes = _indexes(b, fields.get("indexes"), [c for c, _ in columns])
    if len(b.problems) > before:
        return None
    return TableSpec(name, tuple(columns), database, state_column, indexes)


_NAMES = " (lowercase letters, digits and '_', not starting with a digit; not key or seq)"


def _name(b: Reporter, node: Node | None, at: Node, projection: str) -> str:
    if node is None:
        name = default_table_name(projection)
        if not TABLE_NAME.fullmatch(name):
            b.error(at, f"the projection name '{projection}' is no SQL table name: set table.name")
        return name
    name = b.text(node, "table name")
    if not TABLE_NAME.fullmatch(name):
        b.error(
            node,
            f"bad table name '{name}' (letters, digits and '_', not starting with a digit,"
            " at most 48 characters)",
        )
    elif name.lower() == "evflow_checkpoints" or "__evflow_" in name.lower():
        b.error(node, f"table name '{name}' is evflow's own (evflow_checkpoints, NAME__evflow_*)")
    return name


def _database(b: Reporter, node: Node | None) -> str | None:
    if node is None:
        return None
    url = b.text(node, "database")
    try:
        expanded = expand(url)
    except MissingVariable:
        return url  # checked when replay runs, where the variable is set
    problem = url_problem(expanded)
    if problem is not None:
        b.error(node, problem if expanded == url else f"{problem} (from '{url}')")
    return url


def _columns(b: Reporter, node: Node | None) -> list[tuple[str, str]]:
    if node is None:
        return []
    if b.fields(node, "columns", None) is None:
        return []
    columns = []
    for column, (key_node, type_node) in node.value.items():
        if not COLUMN_NAME.fullmatch(column) or column in RESERVED_COLUMNS:
            b.error(key_node, f"bad column name '{column}'{_NAMES}")
            continue
        kind = b.text(type_node, f"columns.{column}")
        if kind not in COLUMN_TYPES:
            import difflib  # lazily: only broken rules need it

            close = difflib.get_close_matches(kind, list(COLUMN_TYPES), n=1)
            mean = f"did you mean '{close[0]}'? " if close else ""
            b.error(
                type_node,
                f"unknown column type '{kind}' ({mean}one of: {', '.join(COLUMN_TYPES)})",
            )
            continue
        columns.append((column, kind))
    return columns


def _indexes(b: Reporter, node: Node | None, columns: list[str]) -> tuple[tuple[str, ...], ...]:
    if node is None:
        return ()
    if node.kind != "seq":
        b.error(node, "indexes must be a list of column lists, e.g. [[amount], [orders, amount]]")
        return ()
    known = [*RESERVED_COLUMNS, *columns]
    out = []
    for item in node.value:
        names = item.value if item.kind == "seq" else [item]
        if not names:
            b.error(item, "an index needs at least one column")
            continue
        index = []
        for n in names:
            column = b.text(n, "indexes")
            if column not in known:
                b.error(n, f"index column '{column}' is not a column ({', '.join(known)})")
            index.append(column)
        out.append(tuple(index))
    return tuple(out)


__all__ = ["TABLE_KEYS", "build_table", "url_problem"]
