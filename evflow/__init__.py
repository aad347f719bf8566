"""evflow: an ordered event log with YAML rules, actions and projections, for the shell.

The library stands on its own; the ``evflow`` command is a thin layer over :class:`Evflow`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evflow.app import Evflow, ImportResult
from evflow.core.events import normalize
from evflow.errors import EvflowError

if TYPE_CHECKING:
    from evflow.store.sql import SqlStore

__all__ = ["Evflow", "EvflowError", "ImportResult", "normalize", "open_store"]
__version__ = "0.1.0"


def open_store(url: str | None = None) -> SqlStore:
    """Open (creating and migrating as needed) the log at ``url``; by default the one the
    settings name (``EVFLOW_DB``, else ``.evflow/evflow.db``)."""
    from evflow import store
    from evflow.settings import resolve

    return store.open_store(url or resolve().db_url)
