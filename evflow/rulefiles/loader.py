"""Rule files (SPEC §3): YAML text -> definitions, with file:line:column problems.

Loading runs in two phases so that a shell script calling ``evflow emit`` per event does not pay
for YAML on every call.

1. :func:`parse_document`: YAML text -> a tree of :class:`Node` (plain values, every key and value
   with its 1-based line and column). This tree is JSON, so it is cached in ``cache_dir`` keyed by
   the files' names and contents; a cache hit never imports ``yaml`` (nor ``croniter``: the
   cache also lists the cron expressions already found valid).
2. :func:`build_rules` (in :mod:`evflow.rulefiles.builder`): Node trees -> compiled
   :class:`~evflow.core.rules.RuleSet`, collecting every problem in every file (never stopping
   at the first). CEL compiling is cheap, so it runs on every load.

Decisions: ``version`` may be left out (it means 1); any other value is an error. Names share one
namespace across rules, schedules and projections (and across files): ``rules explain``,
deliveries and derived events name a definition by its name alone, so ``x`` must mean one thing.
YAML 1.1 reads ``on`` as ``true``; keys are therefore taken as written, never resolved.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from evflow.core.rules import RuleSet
from evflow.errors import InvalidRules, Problem
from evflow.rulefiles.yamltree import (
    LOADER_VERSION,
    Document,
    Node,
    decode_documents,
    encode_documents,
    parse_document,
)

__all__ = [
    "Document",
    "Node",
    "load_rules",
    "parse_document",
    "parse_text",
    "project_dir",
    "rule_files",
    "validate",
]


def _cache_key(files: list[tuple[Path, bytes]]) -> str:
    digest = hashlib.sha256(LOADER_VERSION.encode())
    for path, content in files:
        name = str(path).encode("utf-8", "surrogateescape")
        # lengths keep ("ab", "c") and ("a", "bc") apart
        digest.update(b"%d:%s%d:" % (len(name), name, len(content)))
        digest.update(content)
    return digest.hexdigest()


def _write_cache(cache_dir: Path, target: Path, text: str) -> None:
    """Atomically replace the cache and remove older ones; a cache that cannot be written is
    skipped silently, because it only saves time."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".{target.name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        for old in cache_dir.glob("rules-*.json"):
            if old != target:
                old.unlink(missing_ok=True)
    except OSError:
        pass


def _load(paths: Sequence[Path], cache_dir: Path | None) -> tuple[RuleSet, list[Problem]]:
    """Read, parse (or take from the cache) and build; the cache is written after a miss."""
    from evflow.rulefiles.builder import build_rules

    contents: list[tuple[Path, bytes]] = []
    failed: list[Document] = []
    for path in paths:
        try:
            contents.append((path, path.read_bytes()))
        except OSError as exc:
            problem = Problem(str(path), 1, 1, f"cannot read: {exc.strerror or exc}")
            failed.append(Document(str(path), None, [problem]))
    target = None
    if cache_dir is not None and not failed:
        target = Path(cache_dir) / f"rules-{_cache_key(contents)}.json"
        try:
            cached = decode_documents(target.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            cached = None  # missing or corrupt: parse again
        if cached is not None:
            return build_rules(*cached)
    docs = failed + [_parse_bytes(path, content) for path, content in contents]
    crons: set[str] = set()
    result = build_rules(docs, crons)
    if cache_dir is not None and target is not None:
        _write_cache(Path(cache_dir), target, encode_documents(docs, crons))
    return result


def _parse_bytes(path: Path, content: bytes) -> Document:
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
