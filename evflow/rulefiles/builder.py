"""The schema of rule files: :class:`~evflow.rulefiles.yamltree.Node` trees -> compiled definitions.

Split from :mod:`evflow.rulefiles.loader` (which reads, parses and caches). Every check reports a
:class:`~evflow.errors.Problem` at the key or value it is about and goes on, so one run reports
every problem in every file; a definition with any problem is left out.

It is over 500 lines because it is one cohesive thing: the rule-file schema, key by key, as one
builder walking one tree; the JSON Schema (:mod:`evflow.rulefiles.jsonschema`) mirrors it, and a
test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from evflow.core.events import format_time, parse_time
from evflow.core.expressions import (
    VARIABLES_PROJECTION,
    VARIABLES_RULE,
    VARIABLES_SCHEDULE,
    Expression,
    ExpressionError,
    Template,
    compile_expression,
    compile_template,
)
from evflow.core.rules import (
    MAX_CHAIN_DEPTH,
    Action,
    EmitAction,
    Handler,
    HttpAction,
    Location,
    Projection,
    Retry,
    Rule,
    RuleSet,
    RunAction,
    Schedule,
    type_matches,
)
from evflow.core.timers import Timing
from evflow.core.windows import (
    Window,
    check_cron,
    load_timezone,
    make_window,
    parse_bound,
    parse_duration,
    suggest_timezone,
)
from evflow.errors import Problem
from evflow.rulefiles.tables import build_table
from evflow.rulefiles.yamltree import Document, Node

NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
# CloudEvents types are any non-empty string (without control characters); in `on`, '*' is a glob
TYPE = re.compile(r"[^\x00-\x1f\x7f-\x9f*]+")
TYPE_GLOB = re.compile(r"[^\x00-\x1f\x7f-\x9f]+")
PYTHON_REF = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_TIMEOUT = 24 * 86_400.0  # seconds: a run or http timeout (see Builder.timeout)
TOP_KEYS = ("version", "defaults", "rules", "schedules", "projections")
RULE_KEYS = ("name", "description", "on", "if", "active", "then", "retry")
WINDOW_KEYS = ("from", "until", "timezone", "cron")
RETRY_KEYS = ("attempts", "backoff", "max_backoff")
TIMER_KEYS = ("after", "at", "key", "cancel_on", "cancel_key")
ACTION_KEYS = {
    "emit": ("emit", "data", "subject", "source", *TIMER_KEYS),
    "run": ("run", "env", "cwd", "timeout", "stdin", "emit_result", *TIMER_KEYS),
    "http": ("http", "method", "headers", "body", "timeout", *TIMER_KEYS),
}
SCHEDULE_KEYS: tuple[str, ...] = (
    "name",
    "description",
    "cron",
    "timezone",
    "active",
    "emit",
    "data",
    "subject",
)
SCHEDULE_KEYS += ("catchup", "max_catchup")
MAX_CATCHUP = 10_000
MAX_ATTEMPTS = 1_000
PROJECTION_KEYS = ("name", "description", "key", "on", "table")
HANDLER_KEYS = ("set", "inc", "append", "unset", "if", "python")
HANDLER_NAMES = ("upsert", "merge", "delete")
CATCHUP = ("latest", "all", "none")

Fields = dict[str, Node]  # a mapping's value nodes by key


def build_rules(
    documents: Sequence[Document], valid_crons: set[str] | None = None
) -> tuple[RuleSet, list[Problem]]:
    """Definitions from parsed files, and every problem (errors and warnings), sorted by place.

    ``valid_crons``: cron expressions already known to be valid (not checked again); the ones
    found valid here are added to it.
    """
    builder = _Builder(set() if valid_crons is None else valid_crons)
    for doc in documents:
        builder.problems.extend(doc.problems)
        if doc.root is not None:
            builder.document(doc)
    builder.check_cycles()
    builder.check_targets()
    order = {doc.file: i for i, doc in enumerate(documents)}
    builder.problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line, p.column))
    ruleset = RuleSet(tuple(builder.rules), tuple(builder.schedules), tuple(builder.projections))
    return ruleset, builder.problems


def plain(node: Node) -> Any:
    """The node's value without places; dates become ISO text (event data is JSON)."""
    if node.kind == "map":
        return {k: plain(v) for k, (_, v) in node.value.items()}
    if node.kind == "seq":
        return [plain(n) for n in node.value]
    return node.value.isoformat() if isinstance(node.value, date) else node.value


def _suggest(word: str, choices: Sequence[str]) -> str:
    import difflib  # lazily: only broken rules need it

    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(choices)}"


def _describe(node: Node) -> str:
    if node.kind != "scalar":
        return "a mapping" if node.kind == "map" else "a list"
    return "nothing" if node.value is None else f"{type(node.value).__name__} {node.value!r}"


def _bound(node: Node | None) -> Any:
    """A window bound as YAML gave it: dates and date-times stay, other scalars are text."""
    if node is None:
        return None
    return node.value if isinstance(node.value, date | str) else node.raw or node.value


def _strings(node: Node) -> list[Node]:
    if node.kind == "map":
        return [leaf for _, value in node.value.values() for leaf in _strings(value)]
    if node.kind == "seq":
        return [leaf for n in node.value for leaf in _strings(n)]
    return [node] if isinstance(node.value, str) else []


class _Builder:
    def __init__(self, valid_crons: set[str]) -> None:
        self.valid_crons = valid_crons
        self.problems: list[Problem] = []
        self.rules: list[Rule] = []
        self.schedules: list[Schedule] = []
        self.projections: list[Projection] = []
        self.names: dict[str, tuple[str, Location]] = {}
        self.file = ""
        self.name: str | None = None  # the definition being built, for Problem.rule
        self.timezone = "UTC"  # the file's default

    # -- reporting and readers: each reports its problems and returns a fallback ---------------

    def at(self, node: Node) -> Location:
        return Location(self.file, node.line, node.column)

    def error(self, node: Node, message: str) -> None:
        self.problems.append(Problem(self.file, node.line, node.column, message, self.name))

    def need(self, fields: Fields, key: str, node: Node, kind: str, hint: str) -> Node | None:
        if key not in fields:
            self.error(node, f"{kind} needs '{key}' ({hint})")
        return fields.get(key)

    def fields(self, node: Node, what: str, allowed: Sequence[str] | None) -> Fields | None:
        """A mapping's value nodes, reporting unknown keys with a did-you-mean."""
        if node.kind != "map":
            self.error(node, f"{what} must be a mapping, got {_describe(node)}")
            return None
        for key, (key_node, _) in node.value.items():
            if allowed is not None and key not in allowed:
                self.error(key_node, f"unknown key '{key}' ({_suggest(key, allowed)})")
        return {key: value for key, (_, value) in node.value.items()}

    def text(self, node: Node | None, what: str) -> str:
        """A string. A plain date counts as written (JSON Schema tools read YAML dates as
        strings too); a number or a boolean is not a string here, as in the JSON Schema."""
        if node is None:
            return ""
        if node.kind == "scalar" and isinstance(node.value, str):
            return node.value
        if node.kind == "scalar" and isinstance(node.value, date) and node.raw is not None:
            return node.raw
        self.error(node, f"{what} must be a string, got {_describe(node)}")
        return ""

    def scalar_text(self, node: Node | None, what: str) -> str:
        """A string, or a number or boolean taken as written (argv items, env and headers:
        the JSON Schema allows those too)."""
        if node is not None and node.kind == "scalar" and node.raw is not None and (
            node.value is not None
        ):
            return node.raw
        return self.text(node, what)

    def choice(self, node: Node | None, what: str, choices: Sequence[str], default: str) -> str:
        if node is None:
            return default
        value = self.text(node, what)
        if value not in choices:
            self.error(node, f"unknown {what} '{value}' ({_suggest(value, choices)})")
        return value

    def event_type(self, node: Node | None, what: str, glob: bool = False) -> str:
        value = self.text(node, what)
        if node is None or not isinstance(node.value, str):
            return value
        if not value:
            self.error(node, f"{what}: an event type is a non-empty string")
        elif not (TYPE_GLOB if glob else TYPE).fullmatch(value):
            allowed = "any text without control characters" + ("" if glob else "; no '*'")
            self.error(node, f"bad event type {value!r} in {what} ({allowed})")
        return value

    def types(self, node: Node | None, what: str) -> tuple[str, ...]:
        if node is None:
            return ()
        nodes = node.value if node.kind == "seq" else [node]
        if not nodes:
            self.error(node, f"{what} needs at least one event type")
        return tuple(self.event_type(n, what, glob=True) for n in nodes)

    def integer(
        self, node: Node | None, what: str, minimum: int, default: int, maximum: int = 2**31 - 1
    ) -> int:
        if node is None:
            return default
        value = node.value
        if node.kind != "scalar" or not isinstance(value, int) or isinstance(value, bool):
            self.error(node, f"{what} must be a whole number, got {_describe(node)}")
        elif value < minimum:
            self.error(node, f"{what} must be at least {minimum}, got {value}")
        elif value > maximum:
            self.error(node, f"{what} must be at most {maximum}, got {value}")
        else:
            return value
        return default

    def duration(self, node: Node | None, what: str, default: float, positive: bool) -> float:
        if node is None:
            return default
        value = node.value if node.kind == "scalar" else None
        try:
            if value is None:
                raise ValueError(f"expected a duration like 30s or 10m, got {_describe(node)}")
            seconds = parse_duration(value)
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return default
        if positive and seconds <= 0:
            self.error(node, f"{what} must be more than 0")
        return seconds

    def timeout(self, node: Node | None, default: float) -> float:
        """An action's timeout: more than 0, at most :data:`MAX_TIMEOUT` (the OS waits on a
        program in milliseconds that must fit 31 bits, about 24.8 days)."""
        seconds = self.duration(node, "timeout", default, positive=True)
        if node is not None and seconds > MAX_TIMEOUT:
            self.error(node, "timeout must be at most 24d")
            return default
        return seconds

    def position(self, node: Node, line: int, column: int) -> tuple[int, int]:
        """Where (line, column) of a scalar's text is in the file; best effort for folded text."""
        text_line, text_column = node.text_at
        if node.style == "|":
            return text_line + line - 1, text_column + column - 1
        if line == 1 and (node.one_line or node.style in ("", "'", '"')):
            return text_line, text_column + column - 1
        return text_line, text_column

    def compile_problem(self, node: Node, exc: ExpressionError, what: str) -> None:
        line, column = self.position(node, exc.line, exc.column)
        self.problems.append(Problem(self.file, line, column, f"{what}: {exc.message}", self.name))

    def expression(
        self, node: Node | None, what: str, variables: frozenset[str]
    ) -> Expression | None:
        if node is None:
            return None
        source = self.text(node, what)
        try:
            return compile_expression(source, variables)
        except ExpressionError as exc:
            self.compile_problem(node, exc, what)
            return None

    def condition(self, node: Node | None, variables: frozenset[str]) -> Expression | None:
        """An ``if``: CEL that must be a boolean, known when the rules load (``if: data.plan``
        would otherwise be a surprise at run time, on every event)."""
        expr = self.expression(node, "if", variables)
        if expr is None or node is None:
            return expr
        kind = expr.result_type
        if kind == "bool":
            return expr
        src = expr.source
        if kind == "dyn":
            self.error(
                node,
                f"if must be a boolean expression, and '{src}' may be of any type (compare it:"
                f" {src} == 'pro', {src} > 0; or write {src} == true for a flag)",
            )
        else:
            self.error(node, f"if must be a boolean expression, and '{src}' is of type {kind}")
        return None

    def template(
        self, node: Node | None, what: str, variables: frozenset[str], value: Any = None
    ) -> Template | None:
        if node is None:
            return None
        try:
            return compile_template(plain(node) if value is None else value, variables)
        except ExpressionError:
            pass
        # Find the string that failed: this only runs for broken rules, so compiling twice is fine.
        for leaf in _strings(node):
            try:
                compile_template(leaf.value, variables)
            except ExpressionError as exc:
                self.compile_problem(leaf, exc, what)
                return None
        self.error(node, f"{what}: invalid template")
        return None

    def string_map(self, node: Node | None, what: str) -> Template | None:
        """A map of names to string templates (env, headers)."""
        fields = self.fields(node, what, None) if node is not None else None
        if node is None or fields is None:
            return None
        values = {key: self.scalar_text(value, f"{what}.{key}") for key, value in fields.items()}
        return self.template(node, what, VARIABLES_RULE, values)

    def claim(self, kind: str, node: Node | None, item: Node) -> str:
        """The definition's name, checked for shape and uniqueness across files and kinds."""
        self.name = None
        if node is None:
            self.error(item, f"{kind} needs a name")
            return ""
        name = self.text(node, "name")
        self.name = name or None
        if not NAME.fullmatch(name):
            self.error(
                node,
                f"bad name '{name}' (lowercase letters, digits, '.', '_' and '-', "
                "starting with a letter or digit)",
            )
        elif name in self.names:
            first_kind, first = self.names[name]
            how = "" if first_kind == kind else f" as a {first_kind}"
            self.error(node, f"duplicate {kind} name '{name}' (first defined{how} at {first})")
        else:
            self.names[name] = (kind, self.at(node))
        return name

    def zone(self, node: Node | None) -> str | None:
        """The timezone named by ``node``, else the file's default; None when unknown."""
        if node is None:
            return self.timezone
        name = self.text(node, "timezone")
        try:
            load_timezone(name)
        except ValueError:
            guess = suggest_timezone(name)
            hint = f" (did you mean '{guess}'?)" if guess else ""
            self.error(node, f"unknown timezone '{name}'{hint}")
            return None
        return name

    def cron(self, node: Node | None, what: str) -> str | None:
        if node is None:
            return None
        expr = self.text(node, what)
        problem = None if expr in self.valid_crons else check_cron(expr)
        if problem is not None:
            detail = problem.removeprefix(f"invalid cron expression '{expr}': ")
            self.error(node, f"bad cron expression '{expr}': {detail}")
        else:
            self.valid_crons.add(expr)
        return expr

    def window(self, node: Node | None, zone: str | None, with_cron: bool) -> Window | None:
        fields = None
        if node is not None:
            fields = self.fields(node, "active", WINDOW_KEYS if with_cron else ("from", "until"))
        if node is None or fields is None:
            return None
        before = len(self.problems)
        if with_cron:
            zone = self.zone(fields.get("timezone"))
        cron = self.cron(fields.get("cron"), "active.cron")
        if zone is None:
            return None
        bounds = {}
        for key in ("from", "until"):
            if key in fields:
                try:
                    bounds[key] = parse_bound(_bound(fields[key]), load_timezone(zone))
                except ValueError as exc:
                    self.error(fields[key], f"active.{key}: {exc}")
        if len(bounds) == 2 and bounds["until"] <= bounds["from"]:
            self.error(fields["until"], "active.until must be after active.from")
        if len(self.problems) > before:
            return None
        try:
            window = make_window(
                _bound(fields.get("from")), _bound(fields.get("until")), zone, None
            )
        except ValueError as exc:
            self.error(node, f"active: {exc}")
            return None
        # The cron is checked above (or known valid), so make_window need not import croniter.
        return dataclasses.replace(window, cron=cron) if cron else window

    # -- the file ---------------------------------------------------------------------------------

    def document(self, doc: Document) -> None:
        assert doc.root is not None
        self.file, self.name, self.timezone = doc.file, None, "UTC"
        fields = self.fields(doc.root, "rule file", TOP_KEYS)
        if fields is None:
            return
        version = fields.get("version")
        # 1.0 is the number 1, as JSON Schema's `const: 1` says too; true is not
        if version is not None and (
            type(version.value) not in (int, float) or version.value != 1
        ):
            self.error(version, f"version must be 1, got {_describe(version)}")
        defaults = fields.get("defaults")
        settings = None
        if defaults is not None and defaults.value is not None:
            settings = self.fields(defaults, "defaults", ("timezone",))
        if settings:
            # A bad default is reported once, here; the definitions fall back to UTC.
            self.timezone = self.zone(settings.get("timezone")) or "UTC"
        kinds: list[tuple[str, str, Callable[[Node], None]]] = [
            ("rules", "rule", self.rule),
            ("schedules", "schedule", self.schedule),
            ("projections", "projection", self.projection),
        ]
        for key, kind, build in kinds:
            node = fields.get(key)
            if node is None or node.value is None:
                continue
            if node.kind != "seq":
                self.error(node, f"{key} must be a list of {kind}s, got {_describe(node)}")
                continue
            for item in node.value:
                # Named early so that every problem of the definition carries its name.
                name = item.value.get("name", (None, None))[1] if item.kind == "map" else None
                self.name = name.value if name and isinstance(name.value, str) else None
                build(item)
            self.name = None

    def rule(self, node: Node) -> None:
        fields = self.fields(node, "rule", RULE_KEYS)
        if fields is None:
            return
        before = len(self.problems)
        name = self.claim("rule", fields.get("name"), node)
        on_hint = "an event type, a glob, or a list of them"
        on = self.types(self.need(fields, "on", node, "rule", on_hint), "on")
        condition = self.condition(fields.get("if"), VARIABLES_RULE)
        window = self.window(fields.get("active"), None, with_cron=True)
        retry = self.retry(fields.get("retry"))
        then = self.need(fields, "then", node, "rule", "a list of actions")
        actions: list[Action | None] = []
        if then is not None and (then.kind != "seq" or not then.value):
            self.error(then, "then must be a list of at least one action")
        elif then is not None:
            actions = [self.action(item) for item in then.value]
        description = self.text(fields.get("description"), "description")
        if len(self.problems) == before:
            done = tuple(a for a in actions if a is not None)
            where = self.at(node)
            self.rules.append(Rule(name, on, done, condition, window, retry, description, where))

    def retry(self, node: Node | None) -> Retry:
        default = Retry()
        fields = self.fields(node, "retry", RETRY_KEYS) if node is not None else None
        if fields is None:
            return default
        attempts = self.integer(
            fields.get("attempts"), "retry.attempts", 1, default.attempts, MAX_ATTEMPTS
        )
        backoff = self.duration(fields.get("backoff"), "retry.backoff", default.backoff, False)
        most = self.duration(
            fields.get("max_backoff"), "retry.max_backoff", max(default.max_backoff, backoff), False
        )
        if most < backoff:
            self.error(fields["max_backoff"], "retry.max_backoff must not be less than backoff")
        return Retry(attempts, backoff, most)

    def action(self, node: Node) -> Action | None:
        if node.kind != "map":
            self.error(node, f"an action is a mapping like {{emit: TYPE}}, got {_describe(node)}")
            return None
        keys: dict[str, tuple[Node, Node]] = node.value
        kinds = [k for k in ACTION_KEYS if k in keys]
        if len(kinds) > 1:
            found = " and ".join(kinds)
            self.error(keys[kinds[1]][0], f"an action takes one of emit, run, http (found {found})")
            return None
        if not kinds:
            options = {k for names in ACTION_KEYS.values() for k in names}
            unknown = [(k, key_node) for k, (key_node, _) in keys.items() if k not in options]
            if unknown:
                key, key_node = unknown[0]
                suggestion = _suggest(key, tuple(ACTION_KEYS))
                self.error(key_node, f"unknown action '{key}' ({suggestion})")
            else:
                self.error(node, "an action needs one of: emit, run, http")
            return None
        kind = kinds[0]
        before = len(self.problems)
        fields = self.fields(node, f"{kind} action", ACTION_KEYS[kind]) or {}
        where = self.at(keys[kind][0])
        build = {"emit": self.emit_action, "run": self.run_action, "http": self.http_action}
        action = build[kind](fields, where)
        timing = self.timing(fields)
        if timing is not None:
            action = dataclasses.replace(action, timing=timing)
        return action if len(self.problems) == before else None

    def timing(self, fields: Fields) -> Timing | None:
        """``after``/``at`` and what cancels the timer; None for an action taken at once."""
        after, at = fields.get("after"), fields.get("at")
        if after is None and at is None:
            for key in ("key", "cancel_on", "cancel_key"):
                if key in fields:
                    self.error(fields[key], f"{key} needs after or at (it is about a timer)")
            return None
        if after is not None and at is not None:
            self.error(at, "give after or at, not both")
        cancel_on = self.types(fields.get("cancel_on"), "cancel_on")
        if "cancel_key" in fields and not cancel_on:
            self.error(fields["cancel_key"], "cancel_key needs cancel_on")
        seconds = self.duration(after, "after", 0.0, positive=True) if after is not None else None
        return Timing(
            after=seconds,
            after_text=self.text(after, "after") if after is not None else "",
            at=self.due_at(at) if at is not None and after is None else None,
            key=self.template(fields.get("key"), "key", VARIABLES_RULE),
            cancel_on=cancel_on,
            cancel_key=self.template(fields.get("cancel_key"), "cancel_key", VARIABLES_RULE),
        )

    def due_at(self, node: Node) -> Template | None:
        """``at``: a template giving a time, or a time written out (checked now)."""
        if node.kind != "scalar" or node.value is None or node.value == "":
            self.error(node, f"at must be an RFC 3339 time or a template, got {_describe(node)}")
            return None
        before = len(self.problems)
        text = self.text(node, "at")
        if len(self.problems) > before:  # a number or a boolean: said once, not again as no time
            return None
        if "${{" not in text:
            try:
                text = format_time(parse_time(text))
            except ValueError as exc:
                self.error(node, f"at: {exc}")
                return None
        return self.template(node, "at", VARIABLES_RULE, text)

    def emit_action(self, fields: Fields, where: Location) -> Action:
        data = fields.get("data")
        whole = data is not None and isinstance(data.value, str) and data.value.startswith("${{")
        if data is not None and data.kind != "map" and not whole:
            self.error(data, f"data must be a mapping (or one ${{{{ }}}}), got {_describe(data)}")
        return EmitAction(
            self.event_type(fields["emit"], "emit"),
            self.template(data, "data", VARIABLES_RULE),
            self.template(fields.get("subject"), "subject", VARIABLES_RULE),
            self.template(fields.get("source"), "source", VARIABLES_RULE),
            where,
        )

    def run_action(self, fields: Fields, where: Location) -> Action:
        node = fields["run"]
        argv = None
        if node.kind == "scalar" and isinstance(node.value, str):
            self.error(node, "run takes an argv list, never a shell command line")
        elif node.kind != "seq" or not node.value:
            self.error(node, "run takes a non-empty argv list, like [./script.sh, arg]")
        else:
            args = [self.scalar_text(n, "run argument") for n in node.value]
            argv = self.template(node, "run", VARIABLES_RULE, args)
        cwd = self.text(fields.get("cwd"), "cwd")
        return RunAction(
            argv or compile_template([], VARIABLES_RULE),
            self.string_map(fields.get("env"), "env"),
            os.path.abspath(os.path.join(os.path.dirname(self.file), cwd)) if cwd else None,
            self.timeout(fields.get("timeout"), 60.0),
            self.template(fields.get("stdin"), "stdin", VARIABLES_RULE),
            self.event_type(fields.get("emit_result"), "emit_result") or None,
            where,
        )

    def http_action(self, fields: Fields, where: Location) -> Action:
        url = self.text(fields["http"], "http")
        if not url:
            self.error(fields["http"], "http needs a URL")
        method_node = fields.get("method")
        method = self.text(method_node, "method").upper() or "POST"
        if method_node is not None and method not in HTTP_METHODS:
            self.error(method_node, f"unknown method '{method}' ({_suggest(method, HTTP_METHODS)})")
        return HttpAction(
            self.template(fields["http"], "http", VARIABLES_RULE, url)
            or compile_template("", VARIABLES_RULE),
            method,
            self.string_map(fields.get("headers"), "headers"),
            self.template(fields.get("body"), "body", VARIABLES_RULE),
            self.timeout(fields.get("timeout"), 10.0),
            where,
        )

    def schedule(self, node: Node) -> None:
        fields = self.fields(node, "schedule", SCHEDULE_KEYS)
        if fields is None:
            return
        before = len(self.problems)
        name = self.claim("schedule", fields.get("name"), node)
        cron_node = self.need(
            fields, "cron", node, "schedule", 'a cron expression like "0 2 * * *"'
        )
        cron = self.cron(cron_node, "cron")
        zone = self.zone(fields.get("timezone"))
        window = self.window(fields.get("active"), zone, with_cron=False)
        emit_node = self.need(fields, "emit", node, "schedule", "the event type it appends")
        emit = self.event_type(emit_node, "emit")
        data = self.template(fields.get("data"), "data", VARIABLES_SCHEDULE)
        subject = self.template(fields.get("subject"), "subject", VARIABLES_SCHEDULE)
        catchup = self.choice(fields.get("catchup"), "catchup", CATCHUP, "latest")
        # bounded: one tick emits at most this many occurrences in one transaction
        most = self.integer(fields.get("max_catchup"), "max_catchup", 1, 100, MAX_CATCHUP)
        description = self.text(fields.get("description"), "description")
        if len(self.problems) == before and cron and zone:
            self.schedules.append(
                Schedule(
                    name,
                    cron,
                    zone,
                    emit,
                    data,
                    subject,
                    window,
                    catchup,
                    most,
                    description,
                    self.at(node),
                )
            )

    def projection(self, node: Node) -> None:
        fields = self.fields(node, "projection", PROJECTION_KEYS)
        if fields is None:
            return
        before = len(self.problems)
        name = self.claim("projection", fields.get("name"), node)
        key_hint = "a CEL expression giving the row key, e.g. data.userid"
        key = self.expression(
            self.need(fields, "key", node, "projection", key_hint), "key", VARIABLES_PROJECTION
        )
        on = self.need(fields, "on", node, "projection", "event types mapped to handlers")
        handlers: list[tuple[str, Handler | None]] = []
        if on is not None and self.fields(on, "on", None) is not None:
            if not on.value:
                self.error(on, "on needs at least one event type")
            for pattern, (type_node, handler_node) in on.value.items():
                self.event_type(type_node, "on", glob=True)
                handlers.append((pattern, self.handler(handler_node, pattern)))
        description = self.text(fields.get("description"), "description")
        table = build_table(self, fields["table"], name) if "table" in fields else None
        if len(self.problems) == before and key is not None:
            # the table has its own hash (TableSpec.digest): changing it rebuilds the table only
            folded = {k: v for k, v in plain(node).items() if k != "table"}
            canonical = json.dumps(
                folded, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
            )
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            done = tuple((p, h) for p, h in handlers if h is not None)
            self.projections.append(
                Projection(name, key, done, digest, description, self.at(node), table)
            )

    def handler(self, node: Node, pattern: str) -> Handler | None:
        where = self.at(node)
        if node.kind == "scalar":
            kind = self.text(node, f"on.{pattern}")
            if kind not in HANDLER_NAMES:
                self.error(
                    node,
                    f"unknown handler '{kind}' ({_suggest(kind, HANDLER_NAMES)}; "
                    "or a mapping of set, inc, append, unset)",
                )
            return Handler(kind, location=where)
        fields = self.fields(node, f"handler for {pattern}", HANDLER_KEYS)
        if fields is None:
            return None
        condition = self.condition(fields.get("if"), VARIABLES_PROJECTION)
        ops = [k for k in ("set", "inc", "append", "unset") if k in fields]
        if "python" in fields:
            if ops:
                self.error(fields[ops[0]], f"a python handler takes no '{ops[0]}' (only 'if')")
            ref = self.text(fields["python"], "python")
            if not PYTHON_REF.fullmatch(ref):
                self.error(fields["python"], f"python must be package.module:function, got '{ref}'")
            return Handler("python", condition, python=ref, location=where)
        if not ops:
            self.error(node, "a handler needs one of: set, inc, append, unset (or python)")
        maps: dict[str, Template | None] = {}
        for op in ("set", "inc", "append"):
            op_node = fields.get(op)
            if op_node is not None and op_node.kind != "map":
                self.error(op_node, f"{op} must be a mapping of field to value")
            maps[op] = self.template(op_node, op, VARIABLES_PROJECTION)
        unset_node = fields.get("unset")
        unset: list[str] = []
        if unset_node is not None:
            names = unset_node.value if unset_node.kind == "seq" else [unset_node]
            unset = [self.text(n, "unset") for n in names]
        return Handler(
            "ops",
            condition,
            maps["set"],
            maps["inc"],
            maps["append"],
            tuple(unset),
            location=where,
        )

    # -- across files -----------------------------------------------------------------------------

    def check_targets(self) -> None:
        """Warn where event data would choose the program a run action starts or the host a
        webhook calls: whoever can emit the event then decides what runs (allowed, not advised)."""
        for rule in self.rules:
            for action in rule.actions:
                message = None
                if isinstance(action, RunAction):
                    argv = action.argv.source
                    if isinstance(argv, list) and argv and _chosen_by_data(argv[0]):
                        message = "run: the program (argv[0]) comes from event data"
                elif isinstance(action, HttpAction) and _chosen_by_data(
                    _http_authority(action.url.source)
                ):
                    message = "http: the webhook's scheme or host comes from event data"
                if message is None:
                    continue
                where = action.location or rule.location or Location(self.file, 1, 1)
                text = f"{message}; whoever can emit {' or '.join(rule.on)} chooses it"
                self.problems.append(
                    Problem(where.file, where.line, where.column, text, rule.name, "warning")
                )

    def check_cycles(self) -> None:
        """Warn about rules whose emit actions can trigger each other in a loop (globs count).
        A warning, not an error: an ``if`` may well break the loop at run time."""
        # a timed emit appends later, starting a chain of its own (a timer that re-arms itself)
        emits = {
            r.name: [a for a in r.actions if isinstance(a, EmitAction) and a.timing is None]
            for r in self.rules
        }

        def successors(rule: Rule) -> list[Rule]:
            types = [a.type for a in emits[rule.name]]
            return [r for r in self.rules if any(type_matches(r.on, t) for t in types)]

        reported: set[str] = set()
        for rule in self.rules:
            path = None if rule.name in reported else _path_back(rule, successors)
            if path is None:
                continue
            reported.update(r.name for r in path)
            action = next(a for a in emits[rule.name] if type_matches(path[1].on, a.type))
            where = action.location or rule.location or Location(self.file, 1, 1)
            message = (
                f"emit cycle: {' -> '.join(r.name for r in path)} (an event can trigger itself; "
                f"such a chain stops with an error after {MAX_CHAIN_DEPTH} levels)"
            )
            self.problems.append(
                Problem(where.file, where.line, where.column, message, rule.name, "warning")
            )


def _chosen_by_data(value: Any) -> bool:
    return isinstance(value, str) and "${{" in value


def _http_authority(url: Any) -> str:
    """``scheme://host:port`` of a URL as written (templates included)."""
    if not isinstance(url, str):
        return ""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.split("/", 1)[0] if sep else url


def _path_back(start: Rule, successors: Callable[[Rule], list[Rule]]) -> list[Rule] | None:
    """The shortest path start -> ... -> start (breadth first), or None."""
    previous: dict[str, Rule] = {}
    frontier = [start]
    while frontier:
        following: list[Rule] = []
        for rule in frontier:
            for nxt in successors(rule):
                if nxt.name == start.name:
                    back: list[Rule] = []
                    step: Rule | None = rule
                    while step is not None and step.name != start.name:
                        back.append(step)
                        step = previous.get(step.name)
                    return [start, *reversed(back), start]
                if nxt.name not in previous:
                    previous[nxt.name] = rule
                    following.append(nxt)
        frontier = following
    return None
