"""Storage of the log: :func:`open_store` picks the backend from a database URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from evflow.errors import UsageError

if TYPE_CHECKING:
    from evflow.store.sql import SqlStore

DEFAULT_DB = os.path.join(".evflow", "evflow.db")


def redact(url: str) -> str:
    """A URL with the password of its user-info replaced by ``***`` (never print a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" not in authority:
        return url
    creds, _, host = authority.rpartition("@")
    if ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{tail}"


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced (for messages from drivers)."""
    return " ".join(redact(word) if "://" in word else word for word in text.split(" "))


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


def open_store(url: str | None = None) -> SqlStore:
    """Open (creating and migrating as needed) the log at ``url``; default ``.evflow/evflow.db``."""
    url = url or os.environ.get("EVFLOW_DB") or DEFAULT_DB
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        from evflow.store.postgres import PostgresStore

        return PostgresStore(url)
    if scheme not in ("", "sqlite"):
        raise UsageError(
            f"--db: unsupported database URL scheme {scheme!r} in {redact(url)}",
            hint="use a file path, sqlite:///path or postgresql://user@host/db",
        )
    from evflow.store.sqlite import SqliteStore

    return SqliteStore(sqlite_path(url))
