"""CEL expressions and ``${{ expr }}`` templates (SPEC §3); the only module importing CEL.

Conventions chosen here (documented for rule authors in the rules reference):

- Results are JSON-compatible: CEL timestamps become RFC 3339 UTC strings ending in ``Z``,
  durations become seconds as a float, bytes become base64 text, CEL types their name, and map keys
  that are not strings (``{1: 2}``) become their JSON text.
- In text interpolation (``"order ${{ data.id }}"``) strings go in as they are, null as the empty
  string, and every other value as compact JSON (``true``, ``3``, ``1.5``, ``{"a":1}``).
- A template string is "whole" only when it starts with ``${{`` and ends with its ``}}``; then it
  takes the expression's value and type. There is no escape for a literal ``${{``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from evflow.core.celfast import Fallback, compile_fast
from evflow.core.celhints import python_habits
from evflow.core.celvalues import _SCALARS, cel_safe, holds_nul, json_type, to_json
from evflow.core.text import LazyPattern
from evflow.core.text import as_text as _text
from evflow.errors import EvflowError

VARIABLES_RULE = frozenset({"data", "event"})
VARIABLES_PROJECTION = frozenset({"data", "event", "state", "key"})
VARIABLES_SCHEDULE = frozenset({"schedule"})

# Maps where the value is always an object, so `event + 1` fails at load time rather than per
# event; `data` is any JSON value (or bytes, or null: CloudEvents data), `state` may be null and
# `key` any scalar, so those stay dynamic.
_MAP_VARIABLES = frozenset({"event", "schedule"})
_ALL_VARIABLES = VARIABLES_PROJECTION | VARIABLES_SCHEDULE
_FAST = frozenset(_SCALARS)


class ExpressionError(EvflowError):
    """An expression or template that does not compile; line and column are 1-based."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


class EvaluationError(EvflowError):
    """An expression that failed at run time (a missing key, a type mismatch); one line."""


def _cel() -> Any:
    """The CEL module, imported when first needed: rules whose expressions the closures of
    :mod:`evflow.core.celfast` answer, loaded from the compiled-rules cache, never import it."""
    from cel_expr_python import cel

    return cel


@cache
def _env(variables: frozenset[str]) -> Any:
    # One Env per variable set: creating it costs far more than compiling an expression.
    cel = _cel()
    as_map = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
    return cel.NewEnv(
        variables={n: as_map if n in _MAP_VARIABLES else cel.Type.DYN for n in variables}
    )


@cache
def _error_type() -> Any:
    return _cel().Type.ERROR


class Bindings:
    """Variables bound once for many evaluations (one event against every rule).

    CEL converts the Python values on first use and keeps them in the activation, so evaluating
    several expressions against one ``Bindings`` pays that conversion once. Do not mutate the
    mapping after binding it.
    """

    __slots__ = ("_activation", "_convertible", "_nul", "_values")

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._values = variables
        self._activation: Any = None
        self._nul: bool | None = None  # whether a string holds U+0000 (asked on CEL's first use)
        self._convertible: dict[str, bool] = {}  # whether CEL takes each variable (celfast asks)

    @property
    def holds_nul(self) -> bool:
        if self._nul is None:
            self._nul = holds_nul(dict(self._values))
        return self._nul

    def use_cel_safe_values(self) -> None:
        """Bind the values again with integers beyond 64 bits made doubles (see ``cel_safe``)."""
        self._values = cel_safe(dict(self._values))
        self._activation = None
        self._convertible = {}

    @property
    def activation(self) -> Any:
        # Built on first use: field paths are read without CEL, and often nothing else is.
        # An activation from one Env serves expressions of every Env, so one shared Env that
        # declares every known variable avoids an Env per distinct set of names.
        if self._activation is None:
            self._activation = _env(_ALL_VARIABLES).Activation(data=self._values)
        return self._activation


def bind(variables: Mapping[str, Any]) -> Bindings:
    """Bind variables for repeated evaluation (see ``Bindings``)."""
    return Bindings(variables)


_UNSET: Any = object()


class Expression:
    """A compiled CEL expression; ``source`` is the text it was compiled from.

    Equal when the sources are. Evaluation tries, in order: the closure of the common subset
    (:mod:`evflow.core.celfast`, which gives CEL's value or falls back), a plain field path read
    from the values, then CEL itself. The CEL program is made on first need: from its serialized
    form when the expression came from the compiled-rules cache (pickled with it), else by
    compiling ``source``.
    """

    __slots__ = ("_blob", "_compiled", "_fast", "_path", "_variables", "source")

    def __init__(
        self,
        source: str,
        _compiled: Any = None,
        _path: tuple[str, ...] | None = None,
        variables: frozenset[str] = frozenset(),
        blob: bytes | None = None,
    ) -> None:
        self.source = source
        self._compiled = _compiled
        # ("data", "orderId") for the expression `data.orderId`: read straight from the values
        self._path = _path
        self._variables = variables
        self._blob = blob
        self._fast: Any = _UNSET

    def __repr__(self) -> str:
        return f"Expression(source={self.source!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Expression)
        return self.source == other.source

    def __hash__(self) -> int:
        return hash((self.source,))

    def __reduce__(self) -> tuple[Any, ...]:
        blob = self._blob
        if blob is None and self._compiled is not None:
            try:
                blob = self._compiled.serialize()
            except Exception:  # noqa: BLE001 - then the cache compiles it again when needed
                blob = None
        return (_restore, (self.source, self._path, tuple(sorted(self._variables)), blob))

    @property
    def compiled(self) -> Any:
        """The CEL program (made on first use)."""
        if self._compiled is None:
            env = _env(self._variables)
            if self._blob is not None:
                try:
                    self._compiled = env.deserialize(self._blob)
                except Exception:  # noqa: BLE001 - another CEL version: compile the source
                    self._blob = None
            if self._compiled is None:
                self._compiled = env.compile(self.source)
        return self._compiled

    @property
    def result_type(self) -> str:
        """The type CEL's checker gives the expression's value: ``bool``, ``int``, ``string``,
        … or ``dyn`` (known only at run time, such as a field of ``data``)."""
        return repr(self._compiled.return_type()).lower()

    def evaluate(self, variables: Mapping[str, Any] | Bindings) -> Any:
        """The expression's value as a JSON-compatible Python value."""
        plain = self._eval(variables)
        return plain if type(plain) in _FAST else to_json(plain)

    def evaluate_bool(self, variables: Mapping[str, Any] | Bindings) -> bool:
        """The expression's value, which must be a bool (for ``if`` filters)."""
        plain = self._eval(variables)
        if plain is True or plain is False:
            return plain
        result = to_json(plain)
        shown = json.dumps(result)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise EvaluationError(f"expected a bool, got {json_type(result)} {shown}")

    def _eval(self, variables: Mapping[str, Any] | Bindings, retried: bool = False) -> Any:
        if self._path is not None:
            # A plain field path is most templates' and keys' whole expression: walking the
            # dicts gives CEL's value; anything unusual (a missing key) goes to CEL for its error.
            found = _walk(
                variables._values if isinstance(variables, Bindings) else variables, self._path
            )
            if found is not _MISSING:
                return found
        fast = self._fast
        if fast is _UNSET:
            fast = self._fast = compile_fast(self.source, self._variables or _ALL_VARIABLES)
        if fast is not None:
            try:
                if isinstance(variables, Bindings):
                    return fast(variables._values, variables._convertible)
                return fast(variables)
            except Fallback:
                pass
        if variables.holds_nul if isinstance(variables, Bindings) else holds_nul(dict(variables)):
            # cel-expr-python cuts strings at a NUL on the way in: evaluating would answer
            # for other values than the event's (a bypassed filter); refuse, as for any error
            raise EvaluationError(_NUL_REFUSED)
        try:
            if isinstance(variables, Bindings):
                value = self.compiled.eval(variables.activation)
            else:
                # For a single evaluation, passing the mapping directly is faster than an
                # activation.
                value = self.compiled.eval(data=variables)
        except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
            # "Iteration budget exceeded" and CEL's other internal errors: an evaluation error
            # like any other (a filter that does not match), never a crash
            raise EvaluationError(_runtime_message(str(exc))) from None
        plain = value.plain_value()
        # A CEL error's plain value is its message, a str: only a str result can be an error,
        # so the common bool/number results skip asking for the type.
        if type(plain) is str and value.type() == _error_type():
            if not retried and "out of range for" in plain:
                # An integer beyond 64 bits somewhere in the values: CEL has no such numbers,
                # and converting the values fails whatever the expression reads. They reach CEL
                # as doubles (documented in the rules reference); evaluate again with those.
                if isinstance(variables, Bindings):
                    variables.use_cel_safe_values()
                    return self._eval(variables, retried=True)
                return self._eval(cel_safe(variables), retried=True)
            raise EvaluationError(_runtime_message(plain))
        return plain


_MISSING = object()
_NUL_REFUSED = (
    "a string holding U+0000 (NUL) cannot be evaluated by CEL; "
    "read it with a plain field path (data.field) or remove the NUL"
)
_FIELD_PATH = LazyPattern(r"\s*([a-z_]+)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*")
_PLAIN = (str, int, float, bool, type(None))


def _walk(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = values
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict | list):
        # CEL hands back a copy; so must this, or a caller mutating it would mutate the event
        return json.loads(json.dumps(value))
    return _MISSING


def compile_expression(source: str, variables: frozenset[str]) -> Expression:
    """Compile CEL text against the given variables; unknown names are compile errors."""
    if not source.strip():
        raise ExpressionError("empty expression")
    try:
        compiled = _env(variables).compile(source)
    except RuntimeError as exc:
        message, line, column = _compile_problem(str(exc))
        raise ExpressionError(message + python_habits(source), line, column) from None
    path = None
    match = _FIELD_PATH.fullmatch(source)
    if match and match.group(1) in variables:
        path = (match.group(1), *match.group(2)[1:].split("."))
    return Expression(source, compiled, path, variables)


def _restore(
    source: str, path: tuple[str, ...] | None, variables: tuple[str, ...], blob: bytes | None
) -> Expression:
    return Expression(source, None, path, frozenset(variables), blob)


# "ERROR: <input>:1:16: Syntax error: ..." — the first error is enough; CEL's caret drawing follows
# on the next lines and is dropped because evflow prints its own file:line:column.
_COMPILE_ERROR = LazyPattern(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")
_COMPILE_OVERLOAD = LazyPattern(r"found no matching overload for '(.*)' applied to '\((.*)\)'$")
_STATUS_PREFIX = LazyPattern(r"^[A-Z_]+: ")
_STATUS_SUFFIX = LazyPattern(r" \[[A-Z_]+\]$")


def _compile_problem(text: str) -> tuple[str, int, int]:
    match = _COMPILE_ERROR.search(text)
    if match is None:
        return _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", text.strip())).splitlines()[0], 1, 1
    line, column, message = int(match[1]), int(match[2]), _STATUS_SUFFIX.sub("", match[3])
    message = message.replace(" (in container '')", "")
    if m := _COMPILE_OVERLOAD.match(message):
        name = m[1].strip("_")
        what = "function" if name.replace(".", "").isalnum() else "operator"
        return f"no {what} '{name}' for ({m[2]})", max(line, 1), max(column, 1)
    if message.startswith("Syntax error: mismatched input '<EOF>'"):
        message = "Syntax error: unexpected end of expression"
    elif message.startswith("Syntax error:"):
        # The set of expected tokens is a wall of grammar names, not a help.
        message = message.split(" expecting ", 1)[0]
    return message, max(line, 1), max(column, 1)


_KEY_NOT_FOUND = LazyPattern(r'Key not found in map : "(.*)"$')
_NO_OVERLOAD = LazyPattern(r"No matching overloads found : _?([^(]*?)_?\((.*)\)$")
_NO_VARIABLE = LazyPattern(r'No value with name "(.*)" found in Activation')


def _runtime_message(text: str) -> str:
    message = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", text.strip()))
    message = message.splitlines()[0] if message else "evaluation failed"
    if m := _KEY_NOT_FOUND.search(message):
        return f"no such key: {m[1]}"
    if m := _NO_OVERLOAD.search(message):
        return f"no operator '{m[1]}' for ({m[2]})"
    if m := _NO_VARIABLE.search(message):
        return f"no value for variable '{m[1]}'"
    if message == "Applying SELECT to non-message type":
        return "field access on a value that is not a map"
    return message


# Templates ----------------------------------------------------------------------------------------

_OPEN = "${{"


class Template:
    """A JSON-like value whose strings may hold ``${{ expr }}``; compiled once, rendered often."""

    __slots__ = ("_node", "expressions", "is_constant", "source")

    def __init__(self, node: Any, expressions: list[Expression], source: Any = None) -> None:
        self._node = node
        self.expressions = expressions
        self.is_constant = not expressions
        self.source = source  # the value as written, for display

    def render(self, variables: Mapping[str, Any] | Bindings) -> Any:
        """The value with every expression replaced by its result (types kept for whole strings)."""
        if len(self.expressions) > 1 and not isinstance(variables, Bindings):
            variables = Bindings(variables)  # convert the variables once, not per expression
        return _render(self._node, variables)

    def render_url(self, variables: Mapping[str, Any] | Bindings) -> Any:
        """Render a URL: a value put into the path, query or fragment (after the authority) is
        percent-encoded, so ``a/b?c`` stays one path segment or one query value. A URL that is one
        whole expression is taken as it is (the rule author chose to let data name it)."""
        if self._node[0] != _PARTS:
            return self.render(variables)
        from urllib.parse import quote

        out: list[str] = []
        for part in self._node[1]:
            if isinstance(part, str):
                out.append(part)
                continue
            text = _text(part.evaluate(variables))
            so_far = "".join(out)
            scheme_end = so_far.find("://")
            in_path = scheme_end >= 0 and any(c in so_far[scheme_end + 3 :] for c in "/?#")
            out.append(quote(text, safe="") if in_path else text)
        return "".join(out)


# Nodes are plain tuples tagged by their first item, to keep rendering a cheap recursive walk.
_CONST, _WHOLE, _PARTS, _DICT, _LIST = range(5)


def _render(node: tuple[Any, ...], variables: Mapping[str, Any] | Bindings) -> Any:
    kind = node[0]
    if kind == _CONST:
        return node[1]
    if kind == _WHOLE:
        return node[1].evaluate(variables)
    if kind == _PARTS:
        return "".join(p if isinstance(p, str) else _text(p.evaluate(variables)) for p in node[1])
    if kind == _DICT:
        return {k: _render(v, variables) for k, v in node[1]}
    return [_render(v, variables) for v in node[1]]


def compile_template(value: Any, variables: frozenset[str]) -> Template:
    """Compile every ``${{ }}`` in a JSON-like value; errors point into the string holding them."""
    expressions: list[Expression] = []
    node = _compile_node(value, variables, expressions)
    return Template(node, expressions, value)


def _compile_node(value: Any, variables: frozenset[str], out: list[Expression]) -> tuple[Any, ...]:
    if isinstance(value, str):
        return _compile_string(value, variables, out)
    if isinstance(value, Mapping):
        return (_DICT, tuple((k, _compile_node(v, variables, out)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (_LIST, tuple(_compile_node(v, variables, out) for v in value))
    return (_CONST, value)


def _compile_string(text: str, variables: frozenset[str], out: list[Expression]) -> tuple[Any, ...]:
    if _OPEN not in text:
        return (_CONST, text)
    parts: list[str | Expression] = []
    pos = 0
    while (start := text.find(_OPEN, pos)) != -1:
        if start > pos:
            parts.append(text[pos:start])
        inner_start = start + len(_OPEN)
        end = _find_close(text, inner_start)
        if end is None:
            line, column = _position(text, start)
            raise ExpressionError("unterminated '${{' (missing '}}')", line, column)
        inner = text[inner_start:end]
        lead = len(inner) - len(inner.lstrip())
        try:
            expression = compile_expression(inner.strip(), variables)
        except ExpressionError as exc:
            offset = inner_start + lead + _offset(inner.strip(), exc.line, exc.column)
            line, column = _position(text, offset)
            raise ExpressionError(exc.message, line, column) from None
        parts.append(expression)
        out.append(expression)
        pos = end + 2
    if pos < len(text):
        parts.append(text[pos:])
    if len(parts) == 1 and isinstance(parts[0], Expression):
        return (_WHOLE, parts[0])
    return (_PARTS, tuple(parts))


def _find_close(text: str, pos: int) -> int | None:
    """Index of the ``}}`` closing a template, skipping braces and quotes of CEL map literals."""
    depth = 0
    quote = ""
    i = pos
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif text.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
        elif ch in "'\"":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i += len(quote) - 1
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0 and text.startswith("}}", i):
                return i
            depth = max(depth - 1, 0)
        i += 1
    return None


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(s) + 1 for s in lines[: line - 1]) + column - 1


def _position(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def find_template_error(value: Any, variables: frozenset[str]) -> ExpressionError | None:
    """The first compile problem in a template value, or None; for validators that collect."""
    try:
        compile_template(value, variables)
    except ExpressionError as exc:
        return exc
    return None
