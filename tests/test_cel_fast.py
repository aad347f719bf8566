"""The closure compiler of the common CEL subset against cel-expr-python (property tests).

Whenever a closure answers without falling back, its value must be CEL's value, with the same
type (bool is not int, int is not double); CEL must not have failed on that input. Expressions
are generated from the subset's grammar plus a few constructs outside it (which must be refused
or fall back), over data with every JSON kind, ints at and beyond int64, non-ASCII text, nesting
and missing keys.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from cel_expr_python import cel
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from evflow.core.celfast import Fallback, compile_fast
from evflow.core.celvalues import holds_nul
from evflow.core.expressions import _NUL_REFUSED

MAP = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
VARS = frozenset({"data", "event", "state", "key"})
ENV = cel.NewEnv(variables={"data": MAP, "event": MAP, "state": cel.Type.DYN, "key": cel.Type.DYN})
FIELDS = ["a", "b", "c", "n", "m", "é", "x_1"]


def cel_result(source: str, variables: dict[str, Any]) -> tuple[str, Any]:
    compiled = ENV.compile(source)
    value = compiled.eval(data=variables)
    plain = value.plain_value()
    if value.type() == cel.Type.ERROR:
        return "error", plain
    return "value", plain


# -- data -----------------------------------------------------------------------------------------

ints = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 2**64, -(2**63) - 1]),
    st.integers(),
)
floats = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 1.5, -2.5, 1e300, 5e-324]),
    st.floats(allow_nan=False, allow_infinity=False),
)
texts = st.one_of(
    st.sampled_from(["", "a", "b", "ab", "é", "z", "\x00", "😀"]), st.text(max_size=4)
)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)
    ),
    max_leaves=6,
)
datas = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)


# -- expressions ----------------------------------------------------------------------------------


def literal() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["null", "true", "false", "0", "1", "-1", "100", "1.5", "-0.0", "2.0e3"]),
        st.integers(-(2**63) + 1, 2**63 - 1).map(str),
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6).map(
            lambda f: repr(abs(f)) if "e" not in repr(f) and "inf" not in repr(f) else "1.0"
        ),
        texts.filter(lambda s: all(c not in s for c in "\\\"'\n\x00")).map(json.dumps),
        st.sampled_from(["'x'", "'a\\'b'", '"tab\\t"', "''"]),
    )


def path() -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(
            st.sampled_from(["data", "event"]),
            st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3),
        ).map(lambda t: ".".join([t[0], *t[1]])),
        st.sampled_from(["state", "key", "state.a", "data"]),
    )


def atoms() -> st.SearchStrategy[str]:
    return st.one_of(
        literal(),
        path(),
        path().filter(lambda p: "." in p).map(lambda p: f"has({p})"),
    )


def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = ["==", "!=", "<", "<=", ">", ">="]
    return st.one_of(
        st.tuples(inner, st.sampled_from(ops), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        inner.map(lambda e: f"!({e})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]}) ? ({t[1]}) : ({t[2]})"),
        inner.map(lambda e: f"({e})"),
        # outside the subset: refused, or CEL decides
        st.tuples(inner, inner).map(lambda t: f"{t[0]} + {t[1]}"),
        inner.map(lambda e: f"size({e})"),
        inner.map(lambda e: f"[{e}]"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]} in [{t[1]}]"),
    )


expressions = st.recursive(atoms(), extend, max_leaves=6)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return bool(a == b)


@settings(
    max_examples=int(__import__("os").environ.get("CEL_EXAMPLES", "1500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(expressions, datas, datas, st.one_of(st.none(), datas), scalars)
def test_a_closure_that_answers_gives_cels_value(
    source: str, data: dict, event: dict, state: Any, key: Any
) -> None:
    try:
        ENV.compile(source)
    except RuntimeError:
        assume(False)  # CEL refuses it at load time: never evaluated
    variables = {"data": data, "event": event, "state": state, "key": key}
    # CEL itself would cut a string at a NUL (evflow refuses to ask it then: the test below);
    # a closure reads the value as it is, so CEL is no oracle for such values
    assume(not holds_nul(variables))
    closure = compile_fast(source, VARS)
    if closure is None:
        return
    try:
        value = closure(variables)
    except Fallback:
        return
    try:
        kind, expected = cel_result(source, variables)
    except Exception as exc:  # noqa: BLE001 - CEL could not take these values at all
        pytest.fail(f"closure answered {value!r} where CEL raised {exc!r}: {source}")
    assert kind == "value", f"{source}: closure {value!r}, CEL error {expected!r}"
    assert _same(value, expected), f"{source}: closure {value!r}, CEL {expected!r}"


COMMON = [
    ("data.orderAmt > 100", {"orderAmt": 120}, True),
    ("data.orderAmt > 100", {"orderAmt": 100}, False),
    ("has(data.vip) && data.vip", {"vip": True}, True),
    ("has(data.vip) && data.vip", {}, False),
    ("data.status == 'paid' || data.total >= 1000", {"status": "new", "total": 1000}, True),
    ('!(data.kind == "test")', {"kind": "real"}, True),
    ("data.tier == 'gold' ? 2 : 1", {"tier": "gold"}, 2),
    ("data.userid", {"userid": "u1"}, "u1"),
]


@pytest.mark.parametrize(("source", "data", "expected"), COMMON)
def test_the_common_expressions_take_the_shortcut(source: str, data: dict, expected: Any) -> None:
    closure = compile_fast(source, VARS)
    assert closure is not None
    variables = {"data": data, "event": {}, "state": None, "key": None}
    assert _same(closure(variables), expected)
    assert _same(cel_result(source, variables)[1], expected)


@pytest.mark.parametrize(
    "source",
    [
        "size(data.a) > 1",
        "data.a + 1",
        "data.a in [1, 2]",
        "data['a']",
        "int(data.a)",
        "1u == 1u",
        "0x10 > 1",
        "b'x' == b'x'",
        "r'raw' == 'raw'",
        "data.a // comment",
        "timestamp('2020-01-01T00:00:00Z')",
    ],
)
def test_outside_the_subset_is_refused(source: str) -> None:
    assert compile_fast(source, VARS) is None


def _outcome(expression: Any, variables: dict[str, Any]) -> tuple[str, Any]:
    from evflow.core.expressions import EvaluationError

    try:
        return "value", expression.evaluate(variables)
    except EvaluationError as exc:
        return "error", str(exc)


@settings(
    max_examples=int(__import__("os").environ.get("CEL_EXAMPLES", "1500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(expressions, datas, datas, st.one_of(st.none(), datas), scalars)
def test_expressions_evaluate_as_before_the_shortcut(
    source: str, data: dict, event: dict, state: Any, key: Any
) -> None:
    """What rules and projections see: the same value or the same error message as evaluating
    without the closures (field paths, then CEL: the code before issue 16)."""
    from evflow.core.expressions import ExpressionError, compile_expression

    try:
        with_shortcut = compile_expression(source, VARS)
    except ExpressionError:
        assume(False)
    without = compile_expression(source, VARS)
    without._fast = None  # the closure is made on first use; None: there is none
    variables = {"data": data, "event": event, "state": state, "key": key}
    if holds_nul(variables):
        # cel-expr-python cuts strings at U+0000, so CEL refuses such values (fails closed)
        # while the closures, which read Python's strings, answer for the real value
        assert _outcome(without, variables) == ("error", _NUL_REFUSED)
        return
    assert _outcome(with_shortcut, variables) == _outcome(without, variables)


@pytest.mark.parametrize(
    ("source", "data"),
    [
        ('data.s == "a"', {"s": "a\x00b"}),  # would be True: CEL sees "a"
        ("size(data.s) == 1", {"s": "a\x00b"}),
        ('data.m.k == "x"', {"m": {"k": "x"}, "other": ["\x00"]}),
        ('"a" in data', {"a\x00z": 1}),
    ],
)
def test_cel_refuses_strings_it_would_cut_at_a_nul(source: str, data: dict) -> None:
    from evflow.core.expressions import EvaluationError, bind, compile_expression

    expression = compile_expression(source, VARS)
    expression._fast = None
    variables = {"data": data, "event": {}, "state": None, "key": None}
    for bound in (variables, bind(variables)):
        with pytest.raises(EvaluationError, match="U\\+0000"):
            expression.evaluate_bool(bound)


def test_a_pickled_expression_evaluates_the_same_without_compiling() -> None:
    import pickle

    from evflow.core.expressions import compile_expression

    for source in ["data.a > 1", "size(data.s) > 1 ? 'long' : 'short'", "data.m.k"]:
        original = compile_expression(source, VARS)
        copy = pickle.loads(pickle.dumps(original))
        assert copy == original and copy._compiled is None
        variables = {
            "data": {"a": 2, "s": "abc", "m": {"k": [1]}},
            "event": {},
            "state": None,
            "key": None,
        }
        assert _outcome(copy, variables) == _outcome(original, variables)
