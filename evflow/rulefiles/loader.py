"""Rule files (SPEC §3): YAML text -> definitions, with file:line:column problems.

Loading runs in two phases so that a shell script calling ``evflow emit`` per event does not pay
for YAML on every call.

1. :func:`~evflow.rulefiles.yamltree.parse_document`: YAML text -> a tree of ``Node`` (plain
   values, every key and value with its 1-based line and column).
2. :func:`build_rules` (in :mod:`evflow.rulefiles.builder`): Node trees -> compiled
   :class:`~evflow.core.rules.RuleSet`, collecting every problem in every file (never stopping
   at the first).

The result of both, the rule set and its problems, is cached in ``cache_dir`` keyed by the files'
names and contents and by the code that built it (the modules whose classes it holds): a cache
hit is one ``pickle.loads``, which imports neither ``yaml`` nor ``croniter`` nor the builder, and
compiles no CEL (each expression keeps its serialized CEL program, deserialized on first use;
the common ones never need it, see :mod:`evflow.core.celfast`). The cache is a file evflow
writes beside the database, trusted like the database and the rule files themselves (whose
``python:`` handlers run as code anyway); anything that does not load is a miss.

Decisions: ``version`` may be left out (it means 1); any other value is an error. Names share one
namespace across rules, schedules and projections (and across files): ``rules explain``,
deliveries and derived events name a definition by its name alone, so ``x`` must mean one thing.
YAML 1.1 reads ``on`` as ``true``; keys are therefore taken as written, never resolved.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evflow.core.rules import RuleSet
from evflow.core.text import sha256
from evflow.errors import InvalidRules, Problem

if TYPE_CHECKING:
    from evflow.rulefiles.yamltree import Document

__all__ = [
    "load_rules",
    "parse_text",
    "project_dir",
    "rule_files",
    "validate",
]


CACHE_FORMAT = "ruleset-pickle-1"
# the modules whose classes a pickled rule set holds, or whose code made it (the YAML tree and its
# LOADER_VERSION): a change to any of them is a new key
_PICKLED_MODULES = (
    "evflow.core.rules",
    "evflow.core.expressions",
    "evflow.core.celfast",
    "evflow.core.windows",
    "evflow.core.structs",
    "evflow.errors",
    "evflow.rulefiles.builder",
    "evflow.rulefiles.yamltree",
)
# evflow's own source folder: the modules above are found there without importing them (a cache
# hit imports neither the builder nor the YAML tree, nor importlib's finders to locate them)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _code_stamp() -> bytes:
    import sys

    parts = [CACHE_FORMAT, sys.version]
    for name in _PICKLED_MODULES:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if origin is None:
            origin = os.path.join(_PACKAGE_DIR, *name.split(".")[1:]) + ".py"
        try:
            st = os.stat(origin) if origin else None
        except OSError:
            st = None
        parts.append(f"{name}:{st.st_mtime_ns}:{st.st_size}" if st else f"{name}:?")
    return "|".join(parts).encode("utf-8", "surrogateescape")


def _cache_key(files: list[tuple[Path, bytes]]) -> str:
    digest = sha256(_code_stamp())
    for path, content in files:
        name = str(path).encode("utf-8", "surrogateescape")
        # lengths keep ("ab", "c") and ("a", "bc") apart
        digest.update(b"%d:%s%d:" % (len(name), name, len(content)))
        digest.update(content)
    return digest.hexdigest()


#: the largest rule file evflow parses (1 MiB: thousands of rules)
MAX_RULE_FILE_BYTES = 1024 * 1024


def _write_cache(cache_dir: Path, target: Path, content: bytes) -> None:
    """Atomically replace the cache and remove older ones; a cache that cannot be written is
    skipped silently, because it only saves time."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".{target.name}.{os.getpid()}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, target)
        for old in cache_dir.glob("rules-*"):
            if old != target:
                old.unlink(missing_ok=True)
    except OSError:
        pass


def _load(paths: Sequence[Path], cache_dir: Path | None) -> tuple[RuleSet, list[Problem]]:
    """Read, parse and build, or take both from the cache; the cache is written after a miss."""
    if not paths:  # no rule file (an empty rules folder): nothing to read, build or cache
        return RuleSet(), []
    import pickle

    contents: list[tuple[Path, bytes]] = []
    failed: list[Document] = []
    for path in paths:
        try:
            size = path.stat().st_size
            if size > MAX_RULE_FILE_BYTES:
                # refused before parsing: YAML of this size takes minutes and gigabytes
                problem = Problem(
                    str(path), 1, 1,
                    f"file too large: {size:,} bytes (the limit is {MAX_RULE_FILE_BYTES:,});"
                    " split it into several files",
                )  # fmt: skip
                failed.append(_unread(path, problem))
                continue
            contents.append((path, path.read_bytes()))
        except OSError as exc:
            problem = Problem(str(path), 1, 1, f"cannot read: {exc.strerror or exc}")
            failed.append(_unread(path, problem))
    target = None
    if cache_dir is not None and not failed:
        target = Path(cache_dir) / f"rules-{_cache_key(contents)}.pickle"
        try:
            cached = pickle.loads(target.read_bytes())
        except Exception:  # noqa: BLE001 - missing, corrupt or from other code: build again
            cached = None
        if (
            isinstance(cached, tuple)
            and len(cached) == 3
            and cached[0] == CACHE_FORMAT
            and isinstance(cached[1], RuleSet)
        ):
            return cached[1], list(cached[2])
    from evflow.rulefiles.builder import build_rules

    docs = failed + [_parse_bytes(path, content) for path, content in contents]
    ruleset, problems = build_rules(docs, set())
    if cache_dir is not None and target is not None:
        try:
            content = pickle.dumps((CACHE_FORMAT, ruleset, problems), pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - something in it does not pickle: no cache, still right
            content = None
        if content is not None:
            _write_cache(Path(cache_dir), target, content)
    return ruleset, problems


def _unread(path: Path, problem: Problem) -> Document:
    """The document of a file that was not read: its problem alone."""
    from evflow.rulefiles.yamltree import Document

    return Document(str(path), None, [problem])


def _parse_bytes(path: Path, content: bytes) -> Document:
    from evflow.rulefiles.yamltree import Document, parse_document

    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Document(
            str(path), None, [Problem(str(path), 1, 1, f"not UTF-8 text: {exc.reason}")]
        )
    return parse_document(text, str(path))


# The API ------------------------------------------------------------------------------------------


def rule_files(directory: str | Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` directly in ``directory`` (not in subfolders), by name."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()),
        key=lambda p: p.name,
    )


def project_dir(rules_dir: str | Path | None) -> Path:
    """The project folder: the rules folder's parent (the folder of a rules file's folder).

    ``run`` actions without ``cwd`` run there, ``python:`` handlers are imported from there.
    No rules folder at all (rules given in memory): the current folder.
    """
    if not rules_dir:
        return Path.cwd()
    folder = Path(rules_dir).absolute()
    return folder.parent.parent if folder.is_file() else folder.parent


def parse_text(text: str, filename: str = "rules.yaml") -> tuple[RuleSet, list[Problem]]:
    """Definitions and every problem (errors and warnings) of one file's text; never raises."""
    from evflow.rulefiles.builder import build_rules
    from evflow.rulefiles.yamltree import parse_document

    return build_rules([parse_document(text, filename)])


def load_rules(
    directory: str | Path | None = None,
    *,
    paths: Sequence[Path] | None = None,
    cache_dir: Path | None = None,
) -> RuleSet:
    """The definitions of every rule file; InvalidRules (with every problem) when any has an error.

    A missing directory is an empty rule set. ``directory`` may also name a single file.
    Warnings (an emit cycle, say) do not stop loading; :func:`validate` reports them.
    """
    folder = None if directory is None else Path(directory)
    if paths is None:
        if folder is None:
            raise ValueError("load_rules needs a directory or paths")
        files = [folder] if folder.is_file() else rule_files(folder)
    else:
        files = [Path(p) for p in paths]
    ruleset, problems = _load(files, cache_dir)
    if any(p.severity == "error" for p in problems):
        raise InvalidRules(problems)
    ruleset.directory = str(folder) if folder is not None else ""
    ruleset.files = tuple(str(p) for p in files)
    return ruleset


def validate(
    targets: str | Path | Sequence[str | Path] | None = None,
    *,
    cache_dir: Path | None = None,
    default: str | Path = "rules",
) -> list[Problem]:
    """Every problem, errors and warnings, in the given files and directories (default: the rules
    folder ``default``); never raises for bad rules. A named path that does not exist is a
    problem."""
    if targets is None:
        items: list[str | Path] = [default]
        must_exist = False
    else:
        items = [targets] if isinstance(targets, str | Path) else list(targets)
        must_exist = True
    files: list[Path] = []
    missing: list[Problem] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files.extend(rule_files(path))
        elif path.exists():
            files.append(path)
        elif must_exist:
            missing.append(Problem(str(path), 1, 1, "no such file or directory"))
    return missing + _load(files, cache_dir)[1]
