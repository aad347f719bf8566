"""Settings: which database and which rules folder, decided in one place.

Each is taken from, in order: the argument (``--db``, ``--rules``), the environment
(``EVFLOW_DB``, ``EVFLOW_RULES``), the default (``.evflow/evflow.db``, ``./rules``). The project
folder (where ``run`` actions run and ``python:`` handlers are imported from) is the rules
folder's parent; the compiled-rules cache lives beside a SQLite database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from evflow.core.structs import dataclass
from evflow.rulefiles.loader import project_dir
from evflow.store import is_sqlite

DEFAULT_DB = os.path.join(".evflow", "evflow.db")
DEFAULT_RULES = "rules"


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    rules_dir: Path
    db_from: str  # where db_url came from: argument, environment or default
    rules_from: str

    @property
    def rules_named(self) -> bool:
        """The rules folder was named on purpose: it must exist (a typo would otherwise switch
        every rule off)."""
        return self.rules_from != "default"

    @property
    def project_dir(self) -> Path:
        return project_dir(self.rules_dir)

    @property
    def cache_dir(self) -> Path | None:
        """Compiled-rules cache beside a SQLite database (``.evflow/cache``), else none."""
        if not is_sqlite(self.db_url):
            return Path(".evflow") / "cache"
        path = self.db_url.removeprefix("sqlite:///")
        if path == ":memory:":
            return None
        return Path(path).parent / "cache"


def resolve(
    db: str | None = None,
    rules: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The settings for these arguments, reading the environment for what they leave out."""
    env = os.environ if environ is None else environ
    db_url, db_from = _pick(db, env.get("EVFLOW_DB"), DEFAULT_DB)
    rules_text, rules_from = _pick(
        os.fspath(rules) if rules else None, env.get("EVFLOW_RULES"), DEFAULT_RULES
    )
    return Settings(db_url, Path(rules_text), db_from, rules_from)


def _pick(argument: str | None, environment: str | None, default: str) -> tuple[str, str]:
    if argument:
        return argument, "argument"
    if environment:
        return environment, "environment"
    return default, "default"
