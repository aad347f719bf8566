"""Rule tests (``evflow rules test``): given events, expected outcomes, in a throwaway log.

A test file (``rules/tests/*.yaml`` by default) holds cases. Each case routes its ``given`` events
through the rules exactly as ``evflow emit`` would (windows judged at each event's own time, or at
the case's ``at``), in an in-memory SQLite log that is thrown away afterwards: the real log is never
opened and no action runs. ``run`` and ``http`` actions are rendered (argv, url, body…) with the
event's variables so that tests can check what *would* be delivered.

Matching conventions (documented in docs/ci.md):

- expected events and deliveries are subsets: every key given must be there with an equal value;
  mappings match recursively, lists element by element with the same length;
- each expected entry must match a different actual one, in any order; an empty list means that
  nothing at all may be derived (or delivered);
- ``not_matched``/``matched`` name rules that must match no event / some event (given or derived);
- ``projections: {name: {key: subset of state, absent: [keys]}}`` folds every event of the case.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from evflow.core.events import Event
from evflow.core.expressions import EvaluationError, Template
from evflow.core.rules import HttpAction, Rule, RuleSet, RunAction, event_variables
from evflow.errors import EvflowError, InvalidRules, Problem
from evflow.rulefiles.loader import load_rules, project_dir
from evflow.rulefiles.ruletests import (  # noqa: F401 - the file format, re-exported
    ABSENT,
    CASE_KEYS,
    DELIVERY_KEYS,
    EVENT_KEYS,
    EXPECT_KEYS,
    GIVEN_KEYS,
    TEST_FILE_KEYS,
    TEST_SOURCE,
    TICK,
    TIMER_KEYS,
    Case,
    parse_tests,
    test_files,
)


@dataclass(slots=True)
class CaseResult:
    file: str
    case: str
    line: int
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "case": self.case,
            "passed": self.passed,
            "failures": self.failures,
        }


@dataclass(slots=True)
class Report:
    results: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # invalid test files or rules
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.passed for r in self.results)


# Reading test files ------------------------------------------------------------------------------


def run_tests(paths: Sequence[str | Path] | None, rules_dir: str | Path) -> Report:
    """Run every case of the test files (see :func:`test_files`); invalid files are problems."""
    report = Report()
    rulesets: dict[Path, RuleSet | None] = {}
    for path in test_files(paths, rules_dir):
        report.files += 1
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            report.problems.append(Problem(str(path), 1, 1, f"cannot read: {exc}"))
            continue
        cases, problems = parse_tests(text, str(path), rules_dir)
        report.problems.extend(problems)
        if problems:
            continue
        for case in cases:
            where = case.rules.resolve()
            if where not in rulesets:
                try:
                    rulesets[where] = load_rules(case.rules)
                except InvalidRules as exc:
                    report.problems.extend(p for p in exc.problems if p.severity == "error")
                    rulesets[where] = None
            ruleset = rulesets[where]
            if ruleset is not None:
                report.results.append(run_case(case, ruleset))
    return report


def run_case(case: Case, ruleset: RuleSet) -> CaseResult:
    """Route the case's events in a fresh in-memory log and compare with what it expects."""
    from evflow.core.routing import Outcome
    from evflow.services.append import Appender
    from evflow.services.timers import fire_due
    from evflow.store import open_store
    from evflow.store.timers import select

    result = CaseResult(case.file, case.name, case.line)
    store = open_store(":memory:")
    router = Appender(ruleset, at=case.at)
    outcomes: list[Outcome] = []
    try:
        for index, given in enumerate(case.given):
            if isinstance(given, datetime):  # a tick: fire the timers due by then
                fired = fire_due(store, ruleset, given, on_batch=outcomes.extend)
                result.failures += [f"given[{index}] tick: {error}" for error in fired.errors]
                continue
            try:
                with store.write() as tx:
                    outcomes.append(router.append(tx, copy.deepcopy(given)))
            except EvflowError as exc:
                result.failures.append(f"given[{index}] {given['type']}: {exc}")
                return result
        logged = list(store.read())
        store.end_read()
        deliveries = store.deliveries()
        timers = list(select(store))
    finally:
        store.close()
    by_seq = {e["seq"]: e for e in logged}
    expect = case.expect
    if "events" in expect:
        # derived at once or fired by a timer: every event a rule appended
        derived = [_event_view(e) for e in logged if "evflowrule" in e]
        result.failures += _compare("events", "derived", expect["events"], derived)
    if "deliveries" in expect:
        due = [_delivery(ruleset, by_seq[d.event_seq], d.rule, d.action) for d in deliveries]
        result.failures += _compare("deliveries", "due", expect["deliveries"], due)
    if "timers" in expect:
        views = [{**t.to_json(), "event": by_seq[t.cause_seq]["type"]} for t in timers]
        result.failures += _compare("timers", "set", expect["timers"], views)
    if "matched" in expect or "not_matched" in expect:
        result.failures += _check_matches(ruleset, outcomes, expect)
    if "projections" in expect:
        result.failures += _check_projections(ruleset, logged, expect["projections"])
    return result


def _event_view(event: Event) -> dict[str, Any]:
    view = {"type": event["type"], "subject": event.get("subject"), "data": event.get("data")}
    view["source"] = event.get("source")
    view["rule"] = event.get("evflowrule")
    view["time"] = event["time"]
    return view


def render_delivery(rule: Rule, index: int, event: Event) -> dict[str, Any]:
    """What a ``run``/``http`` action would be given for ``event``, rendered, not run.

    argv, env, url and headers are the text the program or webhook gets; stdin and body stay the
    rendered value (a mapping can then be matched as a subset), the event itself by default.
    """
    from evflow.core.text import as_text

    action = rule.actions[index]
    out: dict[str, Any] = {"rule": rule.name, "kind": action.kind, "action": index}
    out["event"] = event["type"]
    variables = event_variables(event)

    def texts(template: Template | None) -> dict[str, str]:
        rendered = template.render(variables) if template is not None else {}
        if not isinstance(rendered, dict):
            raise EvaluationError("must render to a map")
        return {str(k): as_text(v) for k, v in rendered.items()}

    try:
        if isinstance(action, RunAction):
            argv = action.argv.render(variables)
            out["argv"] = [as_text(a) for a in argv] if isinstance(argv, list) else argv
            out["env"] = texts(action.env)
            out["cwd"] = action.cwd
            out["stdin"] = action.stdin.render(variables) if action.stdin is not None else event
        elif isinstance(action, HttpAction):
            out["url"] = as_text(action.url.render(variables))
            out["method"] = action.method
            out["headers"] = texts(action.headers)
            out["body"] = action.body.render(variables) if action.body is not None else event
    except EvaluationError as exc:
        out["error"] = f"cannot render: {exc}"
    return out


def _delivery(ruleset: RuleSet, trigger: Event, rule_name: str, action: int) -> dict[str, Any]:
    rule = ruleset.rule(rule_name)
    assert rule is not None  # the router found it there
    return render_delivery(rule, action, trigger)


def matches(expected: Any, actual: Any) -> bool:
    """``expected`` is a subset of ``actual``: mappings recursively, lists item by item."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return bool(expected == actual)


def _show(value: Any, event_json: bool = True) -> str:
    if isinstance(value, dict) and event_json:
        # a default body/stdin is the whole event: name it rather than print it
        value = {
            k: "<the event JSON>" if isinstance(v, dict) and "specversion" in v else v
            for k, v in value.items()
        }
    return json.dumps(value, ensure_ascii=False, default=str)


def _compare(
    what: str, verb: str, expected: list[dict[str, Any]], actual: list[dict[str, Any]]
) -> list[str]:
    """Each expected entry against a different actual one; messages show expected vs actual."""
    if not expected:
        if not actual:
            return []
        shown = ", ".join(_show({k: v for k, v in a.items() if k != "source"}) for a in actual)
        return [f"{what}: expected none {verb}; {verb}: {shown}"]
    failures = []
    unused = list(actual)
    for entry in expected:
        hit = next((a for a in unused if matches(entry, a)), None)
        if hit is not None:
            unused.remove(hit)
            continue
        # the actual ones of the same type (or rule), cut to the keys the expectation names
        same = [a for a in actual if all(a.get(k) == entry[k] for k in _IDENTITY if k in entry)]
        if same:
            shown = ", ".join(_show({k: a[k] for k in entry if k in a}) for a in same)
            failures.append(f"{what}: expected {_show(entry, False)}; actual {shown}")
        else:
            names = ", ".join(_label(a) for a in actual) or "nothing"
            failures.append(
                f"{what}: expected {_show(entry, False)}; none such {verb} ({verb}: {names})"
            )
    return failures


_IDENTITY = ("type", "rule", "kind")


def _label(actual: dict[str, Any]) -> str:
    if "kind" in actual:
        return f"{actual['rule']} {actual['kind']}"
    return str(actual["type"])


def _unknown(kind: str, name: str, known: Sequence[str]) -> str:
    return f"unknown {kind} '{name}' (known: {', '.join(known) or 'none'})"


def _check_matches(ruleset: RuleSet, outcomes: list[Any], expect: dict[str, Any]) -> list[str]:
    known = [r.name for r in ruleset.rules]
    judged = [(o, m) for o in outcomes for m in o.matches]
    failures = []
    for name in expect.get("not_matched", []):
        if name not in known:
            failures.append(f"not_matched: {_unknown('rule', name, known)}")
            continue
        hits = [o.event for o, m in judged if m.rule.name == name and m.matched]
        if hits:
            which = ", ".join(f"{e['type']} at {e['time']}" for e in hits)
            failures.append(f"not_matched: rule {name} matched (caused by {which})")
    for name in expect.get("matched", []):
        if name not in known:
            failures.append(f"matched: {_unknown('rule', name, known)}")
        elif not any(m.matched for _, m in judged if m.rule.name == name):
            reasons = sorted({m.reason for _, m in judged if m.rule.name == name})
            why = "; ".join(reasons) or "no event of its type"
            failures.append(f"matched: rule {name} matched no event ({why})")
    return failures


def _check_projections(
    ruleset: RuleSet, events: list[Event], expected: dict[str, dict[str, Any]]
) -> list[str]:
    known = [p.name for p in ruleset.projections]
    unknown = [
        f"projections: {_unknown('projection', n, known)}" for n in expected if n not in known
    ]
    if unknown:
        return unknown
    try:
        states = _project(ruleset, events)
    except EvflowError as exc:
        return [f"projections: {exc}"]
    failures = []
    for name, rows in expected.items():
        actual = states.get(name, {})
        for key, state in rows.items():
            if key == ABSENT:
                failures += [
                    f"projections.{name}[{k}]: expected no row; actual {_show(actual[k], False)}"
                    for k in state
                    if k in actual
                ]
            elif key not in actual:
                failures.append(
                    f"projections.{name}[{key}]: expected {_show(state, False)}; no such row"
                    f" (rows: {', '.join(sorted(actual)) or 'none'})"
                )
            elif not matches(state, actual[key]):
                failures.append(
                    f"projections.{name}[{key}]: expected {_show(state, False)};"
                    f" actual {_show(actual[key], False)}"
                )
    return failures


def _project(ruleset: RuleSet, events: list[Event]) -> dict[str, dict[str, Any]]:
    """Every projection folded over ``events`` (in order): {name: {key text: state}}.

    The fold is :mod:`evflow.core.projections`' (the same one ``evflow replay`` uses), imported
    lazily so that cases without projection expectations do not pay for it.
    """
    from evflow.core.projections import SKIP, CompiledProjection, Vars

    # python handlers are imported from the project folder: the rules folder's parent
    base = str(project_dir(ruleset.directory)) if ruleset.directory else None
    compiled = [CompiledProjection(p, base) for p in ruleset.projections]
    states: dict[str, dict[str, Any]] = {p.name: {} for p in compiled}
    for event in events:
        for projection in compiled:
            fold = projection.fold_for(event["type"])
            if fold is None:
                continue
            variables = Vars(event)
            key, _skipped = projection.key(variables)
            if key is None:
                continue
            rows = states[projection.name]
            state = rows.get(key)
            variables.set_state(state)
            new = projection.step(fold, state, variables, event.get("seq"), event["type"])
            if new is SKIP:
                continue
            if new is None:
                rows.pop(key, None)
            else:
                rows[key] = new
    return states
