"""PostgreSQL for tests: the server from EVFLOW_TEST_PG, and a fresh schema per test.

A test log lives in its own uniquely named schema selected with evflow's ``?schema=`` URL
parameter (see ``evflow/store/postgres.py``), and is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

ENV = "EVFLOW_TEST_PG"


def base_url() -> str:
    url = os.environ.get(ENV)
    if not url:
        raise RuntimeError(f"{ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


def with_params(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def unreachable_reason() -> str | None:
    """Why the test server cannot be used, or None when it answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'evflow[postgres]')"
    try:
        with psycopg.connect(base_url(), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        from evflow.store.postgres import display_url

        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"PostgreSQL at {display_url(base_url())} is unreachable: {reason}"
    return None


def new_schema_name() -> str:
    return f"evflow_t_{uuid.uuid4().hex[:12]}"


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(base_url(), autocommit=True) as conn:
        conn.execute("SET lock_timeout = '20s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def fresh_schema_url(schema: str | None = None) -> Iterator[str]:
    """A URL selecting a new, uniquely named schema; the schema is dropped afterwards."""
    schema = schema or new_schema_name()
    try:
        yield with_params(base_url(), schema=schema)
    finally:
        drop_schema(schema)
