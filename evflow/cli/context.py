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

    def flow(self) -> Evflow:
        if self._flow is None:
            self._flow = Evflow(db=self.db, rules=self.rules)
        return self._flow
