"""A common subset of CEL compiled to Python closures, with CEL's results on the cases it takes.

Rules and projections mostly hold small expressions (``data.orderAmt > 100``, ``has(data.vip)
&& data.vip``, ``data.userid``). Evaluating them through ``cel-expr-python`` costs a conversion of
the variables and a call into C++ (~10 µs); compiling them costs milliseconds per process. This
module turns the subset below into a closure over plain Python values. It is only ever a shortcut:

- :func:`compile_fast` returns ``None`` for anything outside the subset; the caller uses CEL.
- A closure raises :class:`Fallback` whenever a value is not one it is sure about (mixed numeric
  types, an int outside int64, a missing key, a non-bool operand, a non-scalar result, any error):
  the caller then evaluates the same expression with CEL, which gives the value or the error.
  So errors and their messages always come from CEL; the closure only answers the plain cases.

The subset: the literals ``null``, ``true``, ``false``, decimal ints, decimal doubles, and simple
quoted strings; the declared variables; field selection ``a.b``; ``has(a.b)``; ``!``, unary ``-``
on a number literal; ``== != < <= > >=`` on two values of the same kind (int, double, string,
bool; ``==``/``!=`` also null with null); ``&&``, ``||`` with CEL's commutative error rules; and
``c ? a : b``. The property tests (tests/test_cel_fast.py) compare it with ``cel-expr-python`` on
generated expressions and data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from evflow.core.text import LazyPattern


class Fallback(Exception):
    """The closure cannot vouch for the result: evaluate with CEL."""


_FALLBACK = Fallback()
Closure = Callable[[Mapping[str, Any]], Any]

_INT64 = 1 << 63
_UINT64 = 1 << 64
_TOKEN = LazyPattern(
    r"""\s*(?:
      (?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)(?![\w.])
    | (?P<str>"(?:[^"\\\n]|\\[\\"'nt])*"|'(?:[^'\\\n]|\\[\\"'nt])*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[<>!?:().-])
    )""",
    re.VERBOSE,
)
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\'": "'", "\\n": "\n", "\\t": "\t"}
# CEL's reserved words and the names that mean something else in it: never field names here
_RESERVED = frozenset(
    [
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
        "in",
        "true",
        "false",
        "null",
        "has",
        "int",
        "uint",
        "double",
        "bool",
        "string",
        "bytes",
        "list",
        "map",
        "type",
        "dyn",
        "null_type",
        "timestamp",
        "duration",
    ]
)


class _Unsupported(Exception):
    pass


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            raise _Unsupported(source[pos:])
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    out.append(("end", ""))
    return out


class _Parser:
    def __init__(self, source: str, variables: frozenset[str]) -> None:
        self.toks = _tokens(source)
        self.i = 0
        self.variables = variables
        self.roots: set[str] = set()  # the variables the expression reads

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            raise _Unsupported(value)
        self.i += 1
        return tok

    def parse(self) -> Closure:
        node = self.ternary()
        if self.peek()[0] != "end":
            raise _Unsupported("trailing")
        return node

    def ternary(self) -> Closure:
        cond = self.or_()
        if self.peek() == ("op", "?"):
            self.take()
            yes = self.or_()  # CEL: the middle of ?: is a conditional-or
            self.take(":")
            no = self.ternary()
            return _ternary(cond, yes, no)
        return cond

    def or_(self) -> Closure:
        left = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            left = _or(left, self.and_())
        return left

    def and_(self) -> Closure:
        left = self.relation()
        while self.peek() == ("op", "&&"):
            self.take()
            left = _and(left, self.relation())
        return left

    def relation(self) -> Closure:
        left = self.unary()
        tok = self.peek()
        if tok[0] == "op" and tok[1] in _COMPARE:
            self.take()
            right = self.unary()
            if self.peek()[0] == "op" and self.peek()[1] in _COMPARE:
                raise _Unsupported("chained comparison")
            return _compare(tok[1], left, right)
        return left

    def unary(self) -> Closure:
        tok = self.peek()
        if tok == ("op", "!"):
            self.take()
            if self.peek() == ("op", "!"):
                raise _Unsupported("!!")
            return _not(self.member())
        if tok == ("op", "-"):
            self.take()
            kind, text = self.take()
            if kind != "num" or self.peek() == ("op", "."):
                raise _Unsupported("unary minus")
            return _number("-" + text)
        return self.member()

    def member(self) -> Closure:
        kind, text = self.take()
        if kind == "num":
            return _number(text)
        if kind == "str":
            value = _string(text)
            return lambda v: value
        if kind == "op" and text == "(":
            inner = self.ternary()
            self.take(")")
            return self._selects(inner)
        if kind != "name":
            raise _Unsupported(text)
        if text in ("true", "false", "null"):
            constant = {"true": True, "false": False, "null": None}[text]
            return lambda v: constant
        if text == "has":
            self.take("(")
            root, path = self._path()
            self.take(")")
            if not path:
                raise _Unsupported("has() of a variable")
            return _has(root, path)
        if text not in self.variables:
            raise _Unsupported(text)
        self.i -= 1
        root, path = self._path()
        return _select(root, path)

    def _path(self) -> tuple[str, tuple[str, ...]]:
        kind, root = self.take()
        if kind != "name" or root not in self.variables:
            raise _Unsupported(root)
        self.roots.add(root)
        names: list[str] = []
        while self.peek() == ("op", "."):
            self.take()
            kind, name = self.take()
            if kind != "name" or name in _RESERVED:
                raise _Unsupported(name)
            names.append(name)
        if self.peek() == ("op", "("):
            raise _Unsupported("call")
        return root, tuple(names)

    def _selects(self, inner: Closure) -> Closure:
        if self.peek() == ("op", "."):
            raise _Unsupported("select on an expression")
        return inner


def _number(text: str) -> Closure:
    if any(c in text for c in ".eE"):
        value: Any = float(text)
    else:
        value = int(text)
        if not -_INT64 <= value < _INT64:
            raise _Unsupported("int literal out of range")
    return lambda v: value


def _string(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\[\\\"'nt]", lambda m: _ESCAPES[m.group(0)], body)


def _convertible(value: Any) -> bool:
    """Whether CEL can take this value in: it converts a variable whole, and fails on an int
    outside int64/uint64 or a string that is not UTF-8 anywhere in it, whatever is read."""
    t = type(value)
    if t is str:
        return value.isascii() or _utf8(value)
    if t is int:
        return -_INT64 <= value < _UINT64
    if t is dict:
        # the scalars inline: an event's values are checked for every expression evaluated on it
        for k, x in value.items():
            if type(k) is not str or not (k.isascii() or _utf8(k)):
                return False
            tx = type(x)
            if tx is str:
                if not (x.isascii() or _utf8(x)):
                    return False
            elif tx is int:
                if not -_INT64 <= x < _UINT64:
                    return False
            elif tx is not float and tx is not bool and x is not None and not _convertible(x):
                return False
        return True
    if t is list:
        return all(_convertible(x) for x in value)
    return t is float or t is bool or value is None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _select(root: str, path: tuple[str, ...]) -> Closure:
    def get(v: Mapping[str, Any]) -> Any:
        value = v[root] if root in v else _missing()
        for name in path:
            if type(value) is not dict:
                raise _FALLBACK
            if name not in value:
                raise _FALLBACK
            value = value[name]
        return value

    return get


def _missing() -> Any:
    raise _FALLBACK


def _has(root: str, path: tuple[str, ...]) -> Closure:
    *parents, last = path
    parent_get = _select(root, tuple(parents))

    def has(v: Mapping[str, Any]) -> Any:
        parent = parent_get(v)
        if type(parent) is not dict:
            raise _FALLBACK
        return last in parent

    return has


def _scalar(value: Any) -> str:
    """The kind of a value the closures compare, or raise Fallback."""
    t = type(value)
    if t is int:
        if -_INT64 <= value < _INT64:
            return "int"
        raise _FALLBACK
    if t is float:
        return "double"
    if t is str:
        if value.isascii():
            return "string"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _FALLBACK from None
        return "string"
    if t is bool:
        return "bool"
    if value is None:
        return "null"
    raise _FALLBACK


_COMPARE = {"==", "!=", "<", "<=", ">", ">="}


def _compare(op: str, left: Closure, right: Closure) -> Closure:
    import operator

    fn = {
        "==": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op]
    ordering = op not in ("==", "!=")

    def compare(v: Mapping[str, Any]) -> Any:
        a = left(v)
        b = right(v)
        kind = _scalar(a)
        if _scalar(b) != kind or (ordering and kind == "null"):
            raise _FALLBACK
        return fn(a, b)

    return compare


def _not(inner: Closure) -> Closure:
    def not_(v: Mapping[str, Any]) -> Any:
        value = inner(v)
        if type(value) is not bool:
            raise _FALLBACK
        return not value

    return not_


def _and(left: Closure, right: Closure) -> Closure:
    def and_(v: Mapping[str, Any]) -> Any:
        try:
            a = left(v)
        except Fallback:
            a = _FALLBACK
        if a is False:
            return False
        b = right(v)  # a Fallback here: CEL decides (an error, or false absorbing it)
        if type(b) is not bool:
            raise _FALLBACK
        if b is False:
            return False
        if a is True:
            return True
        raise _FALLBACK

    return and_


def _or(left: Closure, right: Closure) -> Closure:
    def or_(v: Mapping[str, Any]) -> Any:
        try:
            a = left(v)
        except Fallback:
            a = _FALLBACK
        if a is True:
            return True
        b = right(v)
        if type(b) is not bool:
            raise _FALLBACK
        if b is True:
            return True
        if a is False:
            return False
        raise _FALLBACK

    return or_


def _ternary(cond: Closure, yes: Closure, no: Closure) -> Closure:
    def ternary(v: Mapping[str, Any]) -> Any:
        c = cond(v)
        if c is True:
            return yes(v)
        if c is False:
            return no(v)
        raise _FALLBACK

    return ternary


class FastExpression(Protocol):
    """A compiled expression: its value for ``v`` (see :func:`_scalar_result` for ``memo``)."""

    def __call__(self, v: Mapping[str, Any], memo: dict[str, bool] | None = None) -> Any: ...


def _scalar_result(inner: Closure, roots: tuple[str, ...]) -> FastExpression:
    def result(v: Mapping[str, Any], memo: dict[str, bool] | None = None) -> Any:
        # ``memo``: whether each root is convertible, kept by the caller for values it
        # evaluates many expressions on (one event against every rule and template)
        for root in roots:
            if root in v:
                if memo is None:
                    ok = _convertible(v[root])
                else:
                    known = memo.get(root)
                    if known is None:
                        known = memo[root] = _convertible(v[root])
                    ok = known
                if not ok:
                    raise _FALLBACK
        value = inner(v)
        _scalar(value)  # maps, lists and out-of-range ints: CEL converts those
        return value

    return result


def compile_fast(source: str, variables: frozenset[str]) -> FastExpression | None:
    """A closure giving CEL's value of ``source`` for the plain cases (raises Fallback for the
    others), or None when ``source`` is outside the subset."""
    try:
        parser = _Parser(source, variables)
        inner = parser.parse()
        return _scalar_result(inner, tuple(sorted(parser.roots)))
    except (_Unsupported, ValueError, IndexError):
        return None
