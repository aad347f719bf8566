"""Global options shared by every command (``--db``, ``--rules``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from evflow.app import Evflow
from evflow.cli.output import Output


@dataclass
class Globals:
    db: str | None = None
    rules: str | None = None
    traceback: bool = False
    out: Output = field(default_factory=Output)
    _flow: Evflow | None = None

    def flow(self, read_only: bool = False) -> Evflow:
        """The log; ``read_only`` commands never create one (a missing log is exit 4)."""
        if self._flow is None:
            self._flow = Evflow(db=self.db, rules=self.rules, create=not read_only)
        return self._flow
