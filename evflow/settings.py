"""Settings: which database and which rules folder, decided in one place.

Each is taken from, in order: the argument (``--db``, ``--rules``), the environment
(``EVFLOW_DB``, ``EVFLOW_RULES``), the project found by discovery, the default
(``.evflow/evflow.db``, ``./rules`` in the current folder). The project folder (where ``run``
actions run and ``python:`` handlers are imported from) is the rules folder's parent; the
compiled-rules cache lives beside a SQLite database.

Discovery works as git's: from the current folder up to the first folder that holds
``.evflow/`` or ``rules/``; it stops at a repository root (a folder with ``.git``, looked at
itself), at the file-system root, and before any folder listed in
``EVFLOW_CEILING_DIRECTORIES`` (``:``-separated, as git's ``GIT_CEILING_DIRECTORIES``: a shared
``/tmp`` with a stray ``.evflow/`` is not anyone's project). So ``evflow emit`` run from
``scripts/`` records into the project's log with the project's rules, instead of starting a
new log there.
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


#: the files that make a folder a project (discovery stops at the first folder with one)
MARKERS = (".evflow", "rules")
#: a folder with one of these is a repository root: discovery looks no higher
REPOSITORY_MARKERS = (".git", ".hg", ".svn")


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    rules_dir: Path
    db_from: str  # where db_url came from: argument, environment, discovery or default
    rules_from: str
    project: Path | None = None  # the folder discovery found, if it was used

    @property
    def rules_named(self) -> bool:
        """The rules folder was named on purpose: it must exist (a typo would otherwise switch
        every rule off)."""
        return self.rules_from in ("argument", "environment")

    @property
    def project_dir(self) -> Path:
        return project_dir(self.rules_dir)

    @property
    def cache_dir(self) -> Path | None:
        """Compiled-rules cache beside a SQLite database (``.evflow/cache``), else none."""
        if not is_sqlite(self.db_url):
            return (self.project or Path()) / ".evflow" / "cache"
        path = self.db_url.removeprefix("sqlite:///")
        if path == ":memory:":
            return None
        return Path(path).parent / "cache"


def discover(start: Path | None = None, ceilings: str = "") -> Path | None:
    """The project folder above ``start`` (default: the current folder), or None."""
    folder = (start or Path.cwd()).absolute()
    stops = {Path(c).absolute() for c in ceilings.split(os.pathsep) if c}
    while True:
        if folder in stops:
            return None
        if any((folder / marker).is_dir() for marker in MARKERS):
            return folder
        if any((folder / marker).exists() for marker in REPOSITORY_MARKERS):
            return None
        if folder.parent == folder:
            return None
        folder = folder.parent


def resolve(
    db: str | None = None,
    rules: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """The settings for these arguments, reading the environment, then discovering the project,
    for what they leave out."""
    env = os.environ if environ is None else environ
    db_text, db_from = _pick(db, env.get("EVFLOW_DB"))
    rules_text, rules_from = _pick(os.fspath(rules) if rules else None, env.get("EVFLOW_RULES"))
    project = None
    if db_text is None or rules_text is None:
        project = discover(cwd, env.get("EVFLOW_CEILING_DIRECTORIES", ""))
    if db_text is None:
        if project is not None:
            db_text, db_from = _near(project / DEFAULT_DB, cwd), "discovery"
        else:
            db_text, db_from = DEFAULT_DB, "default"
    if rules_text is None:
        if project is not None:
            rules_text, rules_from = _near(project / DEFAULT_RULES, cwd), "discovery"
        else:
            rules_text, rules_from = DEFAULT_RULES, "default"
    used = project if "discovery" in (db_from, rules_from) else None
    return Settings(db_text, Path(rules_text), db_from, rules_from, used)


def _near(path: Path, cwd: Path | None) -> str:
    """``path`` as messages should show it: relative to the current folder when it is in it
    (``rules/shop.yaml:5:5``, as before discovery), else absolute."""
    here = (cwd or Path.cwd()).absolute()
    try:
        return str(path.relative_to(here))
    except ValueError:
        return str(path)


def _pick(argument: str | None, environment: str | None) -> tuple[str | None, str]:
    if argument:
        return argument, "argument"
    if environment:
        return environment, "environment"
    return None, "default"
