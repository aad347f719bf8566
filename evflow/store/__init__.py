"""Storage: every SQL statement of evflow lives in this package.

:func:`open_store` picks the backend from a database URL; :mod:`evflow.store.interface` is what the
services see of it. Which URL to open is decided once, by :mod:`evflow.settings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from evflow.core.text import redact, remember_secret
from evflow.errors import UsageError

if TYPE_CHECKING:
    from evflow.store.sql import SqlStore


def sqlite_path(url: str, base: Path | None = None) -> str:
    """The file behind a SQLite URL or plain path (relative to ``base``, default the cwd)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    elif url.startswith("sqlite://"):
        path = url[len("sqlite://") :] or ":memory:"
    else:
        path = url
    if path == ":memory:" or os.path.isabs(path):
        return path
    return str((base or Path.cwd()) / path)


def display_url(url: str) -> str:
    """The URL as evflow prints it: no password (without opening anything)."""
    if is_sqlite(url):
        return redact(url)
    from evflow.store.postgres import display_url as postgres_url

    return postgres_url(url)


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names a SQLite database (a plain path or ``sqlite://``)."""
    return "://" not in url or url.startswith("sqlite")


def open_store(url: str, create: bool = True) -> SqlStore:
    """Open (creating and migrating as needed) the log at ``url``: a path, ``sqlite:///path`` or
    ``postgresql://…``. Without ``create``, a missing log raises :class:`NoDatabase` and
    nothing is created (commands that only read)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    remember_secret(url)  # whatever a driver says about this URL later, its password is hidden
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        from evflow.store.postgres import PostgresStore

        return PostgresStore(url, create=create)
    if scheme not in ("", "sqlite"):
        raise UsageError(
            f"--db: unsupported database URL scheme {scheme!r} in {redact(url)}",
            hint="use a file path, sqlite:///path or postgresql://user@host/db",
        )
    from evflow.store.sqlite import SqliteStore

    return SqliteStore(sqlite_path(url), create=create)
