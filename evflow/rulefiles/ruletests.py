"""Rule test files: finding them and reading them into cases, with file:line:column problems.

The format is documented in docs/ci.md and described by ``evflow rules schema --tests``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from evflow.core.events import Event, format_time, normalize, parse_time
from evflow.errors import InvalidEvent, Problem
from evflow.rulefiles.loader import rule_files
from evflow.rulefiles.yamltree import Node, parse_document

TEST_SOURCE = "evflow:test"
TEST_FILE_KEYS = ("version", "rules", "tests")
CASE_KEYS = ("name", "description", "at", "given", "expect")
GIVEN_KEYS = ("type", "data", "time", "subject", "id", "source")
EXPECT_KEYS = ("events", "deliveries", "timers", "matched", "not_matched", "projections")
EVENT_KEYS = ("type", "data", "subject", "source", "rule", "time")
TIMER_KEYS = ("rule", "action", "kind", "status", "due", "key", "event")
TICK = "tick"  # a given step that fires the timers due at its time (time travel)
DELIVERY_KEYS = (
    "rule", "kind", "action", "event", "argv", "env", "cwd", "stdin", "url", "method", "headers",
    "body",
)  # fmt: skip
ABSENT = "absent"  # in a projection expectation: keys that must have no row


@dataclass(frozen=True, slots=True)
class Case:
    file: str
    name: str
    line: int
    column: int
    given: tuple[Event | datetime, ...]  # events, and tick times (fire what is due by then)
    at: datetime | None
    expect: dict[str, Any]
    rules: Path  # the rules folder (or file) the case runs against


def test_files(paths: Sequence[str | Path] | None, rules_dir: str | Path) -> list[Path]:
    """The named files, the ``*.yaml`` in named folders, or by default ``RULES/tests/*.yaml``."""
    if not paths:
        return rule_files(Path(rules_dir) / "tests")
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        out.extend(rule_files(path) if path.is_dir() else [path])
    return out


def _value(node: Node) -> Any:
    """Plain JSON; dates and times stay the text written (YAML would turn them into objects)."""
    if node.kind == "map":
        return {k: _value(v) for k, (_, v) in node.value.items()}
    if node.kind == "seq":
        return [_value(n) for n in node.value]
    if isinstance(node.value, date):
        return node.raw or node.value.isoformat()
    return node.value


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def error(self, node: Node, message: str) -> None:
        self.problems.append(Problem(self.file, node.line, node.column, message))

    def fields(
        self, node: Node, what: str, allowed: Sequence[str] | None
    ) -> dict[str, Node] | None:
        if node.kind != "map":
            self.error(node, f"{what} must be a mapping")
            return None
        for key, (key_node, _) in node.value.items():
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else "expected one of: " + ", ".join(allowed)
                )
                self.error(key_node, f"unknown key '{key}' in {what} ({hint})")
        return {key: value for key, (_, value) in node.value.items()}

    def items(self, node: Node | None, what: str) -> list[Node]:
        if node is None:
            return []
        if node.kind != "seq":
            self.error(node, f"{what} must be a list")
            return []
        return list(node.value)

    def text(self, node: Node | None, what: str) -> str | None:
        if node is None:
            return None
        value = _value(node)
        if node.kind != "scalar" or not isinstance(value, str):
            self.error(node, f"{what} must be a string")
            return None
        return value

    def names(self, node: Node | None, what: str) -> list[str]:
        if node is not None and node.kind == "scalar":
            return [n for n in [self.text(node, what)] if n]
        return [n for n in (self.text(item, what) for item in self.items(node, what)) if n]

    def case(self, node: Node, rules: Path) -> Case | None:
        fields = self.fields(node, "a test case", CASE_KEYS)
        if fields is None:
            return None
        before = len(self.problems)
        name = self.text(fields.get("name"), "name")
        if name is None:
            self.error(node, "a test case needs a 'name'")
        at = None
        if "at" in fields:
            at_text = self.text(fields["at"], "at")
            try:
                at = parse_time(at_text) if at_text is not None else None
            except ValueError as exc:
                self.error(fields["at"], f"at: {exc}")
        if "given" not in fields:
            self.error(node, "a test case needs 'given' (a list of events)")
        given = [self.step(item, at) for item in self.items(fields.get("given"), "given")]
        expect = self.expect(fields["expect"]) if "expect" in fields else {}
        if len(self.problems) > before or name is None:
            return None
        events = tuple(e for e in given if e is not None)
        return Case(self.file, name, node.line, node.column, events, at, expect, rules)

    def step(self, node: Node, at: datetime | None) -> Event | datetime | None:
        """A given event, or ``{tick: TIME}``: fire the timers due by then."""
        if node.kind == "map" and TICK in node.value:
            fields = self.fields(node, "a tick", (TICK,)) or {}
            return self.time(fields[TICK], TICK)
        return self.event(node, at)

    def time(self, node: Node, what: str) -> datetime | None:
        text = self.text(node, what)
        try:
            return parse_time(text) if text is not None else None
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return None

    def event(self, node: Node, at: datetime | None) -> Event | None:
        fields = self.fields(node, "a given event", GIVEN_KEYS)
        if fields is None:
            return None
        if "type" not in fields:
            self.error(node, "a given event needs a 'type'")
            return None
        raw = {key: _value(value) for key, value in fields.items()}
        raw.setdefault("source", TEST_SOURCE)
        if "time" not in raw and at is not None:
            raw["time"] = at.isoformat()
        try:
            return normalize(raw)
        except InvalidEvent as exc:
            self.error(fields.get(exc.field, node), f"given event: {exc}")
            return None

    def expect(self, node: Node) -> dict[str, Any]:
        fields = self.fields(node, "expect", EXPECT_KEYS) or {}
        out: dict[str, Any] = {}
        for key, what, allowed in (
            ("events", "an expected event", EVENT_KEYS),
            ("deliveries", "an expected delivery", DELIVERY_KEYS),
            ("timers", "an expected timer", TIMER_KEYS),
        ):
            if key in fields:
                entries = []
                for item in self.items(fields[key], key):
                    entry = self.fields(item, what, allowed) or {}
                    kind = entry.get("kind") if key == "deliveries" else None
                    if kind is not None and _value(kind) not in ("run", "http"):
                        self.error(kind, f"kind must be run or http (got {_value(kind)!r})")
                    expected = {k: _value(v) for k, v in entry.items()}
                    for name in ("time", "due"):  # compared as instants, written in any offset
                        if name in entry:
                            when = self.time(entry[name], name)
                            expected[name] = format_time(when) if when is not None else None
                    entries.append(expected)
                out[key] = entries
        for key in ("matched", "not_matched"):
            if key in fields:
                out[key] = self.names(fields[key], key)
        if "projections" in fields:
            out["projections"] = self.projections(fields["projections"])
        return out

    def projections(self, node: Node) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, rows in (self.fields(node, "projections", None) or {}).items():
            expected: dict[str, Any] = {}
            for key, value in (self.fields(rows, f"projections.{name}", None) or {}).items():
                if key == ABSENT:
                    expected[ABSENT] = [str(_value(n)) for n in self.items(value, ABSENT)]
                elif value.kind != "map":
                    self.error(
                        value,
                        f"projections.{name}.{key}: expected a mapping (a subset of the row state)",
                    )
                else:
                    expected[key] = _value(value)
            out[name] = expected
        return out


def parse_tests(text: str, file: str, rules_dir: str | Path) -> tuple[list[Case], list[Problem]]:
    """The cases of one test file and its problems (file:line:column); never raises."""
    doc = parse_document(text, file)
    if doc.problems or doc.root is None:
        return [], doc.problems or [Problem(file, 1, 1, "empty test file (expected 'tests:')")]
    reader = _Reader(file)
    fields = reader.fields(doc.root, "a test file", TEST_FILE_KEYS)
    if fields is None:
        return [], reader.problems
    rules = Path(rules_dir)
    if "rules" in fields:
        named = reader.text(fields["rules"], "rules")
        if named:
            rules = Path(file).parent / named
            if not rules.exists():
                reader.error(fields["rules"], f"rules: {rules}: no such file or folder")
    if "tests" not in fields:
        reader.error(doc.root, "a test file needs 'tests' (a list of cases)")
    cases = [reader.case(n, rules) for n in reader.items(fields.get("tests"), "tests")]
    problems = sorted(reader.problems, key=lambda p: (p.line, p.column))
    return [c for c in cases if c is not None], problems


# Running ------------------------------------------------------------------------------------------
