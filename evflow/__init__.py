"""evflow: an ordered event log with YAML rules, actions and projections, for the shell.

The library stands on its own; the ``evflow`` command is a thin layer over :class:`Evflow`.
"""

from evflow.app import Evflow, ImportResult
from evflow.errors import EvflowError
from evflow.events import normalize
from evflow.store import open_store

__all__ = ["Evflow", "EvflowError", "ImportResult", "normalize", "open_store"]
__version__ = "0.1.0"
