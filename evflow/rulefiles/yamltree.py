"""Rule files, phase 1: YAML text -> a tree of :class:`Node` with 1-based lines and columns.

The only module importing ``yaml``, and only lazily (a cache hit in :mod:`evflow.rulefiles.loader`
never parses). The tree is JSON-encodable (:func:`encode_documents`), which is what the loader
caches. YAML 1.1 reads ``on`` as ``true``; keys are therefore taken as written, never resolved.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from evflow.core.structs import dataclass, field
from evflow.errors import Problem

#: bump whenever the cached tree's shape or the parsing conventions change
LOADER_VERSION = "evflow-loader-1"
_MAX_DEPTH = 64
_MAX_NODES = 200_000  # an alias bomb expands to billions of nodes


@dataclass(slots=True)
class Node:
    """A YAML value with its place in the file.

    ``kind`` is ``map`` (value: dict of key text -> (key node, value node), in file order), ``seq``
    (value: list of nodes) or ``scalar`` (value: str, int, float, bool, None, date or datetime).
    For scalars, ``text_at`` is where the text itself starts (after a quote, or on the first line
    of a block scalar), ``raw`` the text as written when it did not resolve to a string.
    """

    kind: str
    line: int
    column: int
    value: Any
    style: str = ""
    text_at: tuple[int, int] = (0, 0)
    one_line: bool = True
    raw: str | None = None


@dataclass(slots=True)
class Document:
    """One parsed file: its tree (None when empty or unreadable) and the problems parsing found."""

    file: str
    root: Node | None
    problems: list[Problem] = field(default_factory=list)


# Phase 1: YAML -> Node ---------------------------------------------------------------------------


_MERGE_TAG = "tag:yaml.org,2002:merge"


def parse_document(text: str, file: str) -> Document:
    """Parse one rule file's text; YAML errors become problems, never exceptions."""
    import yaml  # lazily: see the module docstring

    doc = Document(file, None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.root = _Composer(loader, doc, text.splitlines()).convert(node, 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        doc.problems.append(Problem(file, line, column, f"invalid YAML: {yaml_in_words(exc)}"))
        doc.root = None
    except (yaml.YAMLError, RecursionError) as exc:
        doc.problems.append(Problem(file, 1, 1, f"invalid YAML: {exc}"))
        doc.root = None
    finally:
        loader.dispose()
    return doc


_TOKENS = {
    "<block mapping start>": "a new key",
    "<block sequence start>": "a list",
    "<block entry>": "a list item ('-')",
    "<block end>": "the end of the block",
    "<scalar>": "a value",
    "<flow mapping start>": "'{'",
    "<flow sequence start>": "'['",
    "<document start>": "'---'",
}


def yaml_in_words(exc: Any) -> str:
    """A YAML parser error as a rule author would say it (pyyaml speaks of its tokens)."""
    problem = str(exc.problem or "").strip()
    context = str(exc.context or "").strip()
    if problem.startswith("expected <block end>"):
        found = problem.split("but found", 1)[-1].strip().strip("'")
        return (
            f"bad indentation: {_TOKENS.get(found, found)} where the block above ends; the keys"
            " of one mapping (and the items of one list) must be indented alike"
        )
    if problem == "mapping values are not allowed here":
        return (
            "a ':' where no key can start: indent this line under its parent key, or quote a"
            " value that holds ': '"
        )
    if problem == "could not find expected ':'":
        return "a key without its ':' (or a line indented more than the keys beside it)"
    if "'\\t'" in problem or "\\t" in problem or "\t" in problem:
        return "a tab character: indent with spaces"
    if "quoted scalar" in context:
        mark = exc.context_mark
        where = f" (it opens at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"a quoted value is never closed{where}"
    for token, words in _TOKENS.items():
        problem = problem.replace(token, words)
        context = context.replace(token, words)
    return f"{problem} ({context})" if context else problem


class _Composer:
    """Turns yaml's composed nodes into :class:`Node`, constructing scalars the safe way."""

    def __init__(self, loader: Any, doc: Document, lines: list[str]) -> None:
        self.loader = loader
        self.doc = doc
        self.lines = lines
        self.count = 0

    def problem(self, node: Any, message: str) -> None:
        mark = node.start_mark
        self.doc.problems.append(Problem(self.doc.file, mark.line + 1, mark.column + 1, message))

    def convert(self, node: Any, depth: int) -> Node:
        import yaml

        self.count += 1
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if depth > _MAX_DEPTH or self.count > _MAX_NODES:
            raise yaml.MarkedYAMLError(
                problem="too deeply nested or too big", problem_mark=node.start_mark
            )
        if isinstance(node, yaml.MappingNode):
            explicit = sum(1 for k, _ in node.value if k.tag != _MERGE_TAG)
            # `<<` merge keys: yaml puts the merged pairs first, in the order of the `<<: [*a, *b]`
            # list; as YAML defines it an earlier map wins over a later one, and explicit keys
            # (which follow) over every merged one
            self.loader.flatten_mapping(node)
            cut = len(node.value) - explicit
            items: dict[str, tuple[Node, Node, bool]] = {}
            for index, (key_node, value_node) in enumerate(node.value):
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problem(key_node, "a key must be a plain value, not a list or mapping")
                    continue
                if index < cut and key_node.value in items:
                    continue  # merged from an earlier map
                key = self.convert(key_node, depth + 1)
                if index >= cut and key_node.value in items and items[key_node.value][2]:
                    first = items[key_node.value][0]
                    self.problem(
                        key_node,
                        f"duplicate key '{key_node.value}' (first at line {first.line})",
                    )
                    continue
                items[key_node.value] = (key, self.convert(value_node, depth + 1), index >= cut)
            return Node("map", line, column, {k: (kn, vn) for k, (kn, vn, _) in items.items()})
        if isinstance(node, yaml.SequenceNode):
            return Node("seq", line, column, [self.convert(n, depth + 1) for n in node.value])
        return self.scalar(node, line, column)

    def scalar(self, node: Any, line: int, column: int) -> Node:
        import yaml

        style = node.style or ""
        try:
            value = self.loader.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            self.problem(node, f"unsupported value: {exc.problem}")
            value = node.value
        except ValueError as exc:  # a date or time that does not exist: 2021-02-30
            self.problem(node, f"invalid date or time '{node.value}': {exc}")
            value = node.value
        if isinstance(value, bytes):
            self.problem(node, "binary values are not supported")
            value = node.value
        elif not isinstance(value, str | int | float | bool | date | type(None)):
            value = node.value
        text_at = (line, column + 1) if style in ("'", '"') else (line, column)
        if style in ("|", ">"):
            text_at = self._block_start(node.start_mark.line)
        one_line = node.start_mark.line == node.end_mark.line
        raw = None if isinstance(value, str) else node.value
        return Node("scalar", line, column, value, style, text_at, one_line, raw)

    def _block_start(self, header: int) -> tuple[int, int]:
        for index in range(header + 1, len(self.lines)):
            text = self.lines[index]
            if text.strip():
                return index + 1, len(text) - len(text.lstrip(" ")) + 1
        return header + 2, 1


# The cache ----------------------------------------------------------------------------------------
# A node is a JSON list: ["m", line, column, [[key, key line, key column, node], ...]],
# ["s", line, column, [node, ...]] or ["v", line, column, value, style, text line, text column,
# one line, raw] where a date value is {"d": iso} and a datetime {"t": iso}. The file also lists
# the cron expressions found valid, so that a hit need not import croniter (~40 ms) to check them.


def _encode(node: Node) -> list[Any]:
    if node.kind == "map":
        items = [[k, kn.line, kn.column, _encode(vn)] for k, (kn, vn) in node.value.items()]
        return ["m", node.line, node.column, items]
    if node.kind == "seq":
        return ["s", node.line, node.column, [_encode(n) for n in node.value]]
    value = node.value
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    elif isinstance(value, date):
        value = {"d": value.isoformat()}
    line, column = node.text_at
    return ["v", node.line, node.column, value, node.style, line, column, node.one_line, node.raw]


def _decode(data: list[Any]) -> Node:
    kind, line, column, value = data[0], data[1], data[2], data[3]
    if kind == "m":
        items = {}
        for key, key_line, key_column, sub in value:
            items[key] = (
                Node("scalar", key_line, key_column, key, text_at=(key_line, key_column)),
                _decode(sub),
            )
        return Node("map", line, column, items)
    if kind == "s":
        return Node("seq", line, column, [_decode(n) for n in value])
    if isinstance(value, dict):
        value = (
            datetime.fromisoformat(value["t"]) if "t" in value else date.fromisoformat(value["d"])
        )
    return Node("scalar", line, column, value, data[4], (data[5], data[6]), data[7], data[8])


def encode_documents(docs: list[Document], crons: set[str]) -> str:
    return json.dumps(
        {
            "version": LOADER_VERSION,
            "crons": sorted(crons),
            "documents": [
                {
                    "file": d.file,
                    "root": _encode(d.root) if d.root is not None else None,
                    "problems": [[p.line, p.column, p.message] for p in d.problems],
                }
                for d in docs
            ],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode_documents(text: str) -> tuple[list[Document], set[str]]:
    data = json.loads(text)
    if data["version"] != LOADER_VERSION:
        raise ValueError("cache from another loader version")
    docs = [
        Document(
            d["file"],
            _decode(d["root"]) if d["root"] is not None else None,
            [Problem(d["file"], line, column, message) for line, column, message in d["problems"]],
        )
        for d in data["documents"]
    ]
    return docs, set(data["crons"])
