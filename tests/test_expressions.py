"""CEL expressions and ${{ }} templates (SPEC §3 "Expressions", "Templates")."""

from __future__ import annotations

import pytest

from evflow.core.expressions import (
    VARIABLES_PROJECTION,
    VARIABLES_RULE,
    VARIABLES_SCHEDULE,
    EvaluationError,
    Expression,
    ExpressionError,
    bind,
    compile_expression,
    compile_template,
    find_template_error,
)


def rule(source: str) -> Expression:
    return compile_expression(source, VARIABLES_RULE)


@pytest.mark.parametrize(
    ("amount", "expected"), [(100.5, True), (101, True), (100, False), (99.9, False)]
)
def test_filter_compares_ints_and_doubles(amount: float, expected: bool) -> None:
    assert rule("data.orderAmt > 100").evaluate_bool({"data": {"orderAmt": amount}}) is expected


def test_string_equality_and_event_fields() -> None:
    variables = {"data": {"x": "y"}, "event": {"type": "order.placed", "seq": 3}}
    assert rule("data.x == 'y' && event.type == 'order.placed'").evaluate_bool(variables)
    assert rule("event.seq + 1").evaluate(variables) == 4


def test_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ExpressionError) as info:
        rule("data.orderAmt >")
    assert (info.value.line, info.value.column) == (1, 16)
    assert info.value.message == "Syntax error: unexpected end of expression"
    assert "\n" not in str(info.value) and "^" not in str(info.value)
    assert str(info.value).startswith("1:16: ")


def test_error_on_a_later_line() -> None:
    with pytest.raises(ExpressionError) as info:
        rule("data.a\n + \n )")
    assert (info.value.line, info.value.column) == (3, 2)


def test_unknown_variable_is_a_compile_error() -> None:
    with pytest.raises(ExpressionError, match="undeclared reference to 'foo.x'") as info:
        rule("foo.x")
    assert info.value.column == 4
    # `state` exists only for projections, `schedule` only for schedules.
    with pytest.raises(ExpressionError):
        rule("state.count")
    compile_expression("state.count", VARIABLES_PROJECTION)
    compile_expression("schedule.name", VARIABLES_SCHEDULE)
    with pytest.raises(ExpressionError):
        compile_expression("data.x", VARIABLES_SCHEDULE)


def test_type_error_found_at_compile_time_is_readable() -> None:
    with pytest.raises(ExpressionError, match=r"^1:5: no operator '\+' for \(string, int\)$"):
        rule("'a' + 1")


def test_empty_expression() -> None:
    with pytest.raises(ExpressionError, match="empty expression"):
        rule("  ")


def test_missing_key_is_an_evaluation_error() -> None:
    with pytest.raises(EvaluationError) as info:
        rule("data.orderAmt > 100").evaluate_bool({"data": {}})
    assert str(info.value) == "no such key: orderAmt"


def test_type_mismatch_is_an_evaluation_error() -> None:
    with pytest.raises(EvaluationError, match=r"^no operator '>' for \(string, int64\)$"):
        rule("data.orderAmt > 100").evaluate_bool({"data": {"orderAmt": "lots"}})
    with pytest.raises(EvaluationError, match="^divide by zero$"):
        rule("1 / 0").evaluate({"data": {}})


def test_evaluate_bool_rejects_non_bool() -> None:
    with pytest.raises(EvaluationError, match="expected a bool, got number 3"):
        rule("data.n").evaluate_bool({"data": {"n": 3}})


def test_string_results_are_not_mistaken_for_errors() -> None:
    assert rule("data.s").evaluate({"data": {"s": "NOT_FOUND: x"}}) == "NOT_FOUND: x"


def test_results_are_json_compatible() -> None:
    variables = {"data": {"m": {"a": [1, None, 2.5]}}}
    assert rule("data.m").evaluate(variables) == {"a": [1, None, 2.5]}
    assert rule("timestamp('2020-01-01T09:00:00+09:00')").evaluate(variables) == (
        "2020-01-01T00:00:00Z"
    )
    assert rule("duration('1m30s')").evaluate(variables) == 90.0
    assert rule("b'hi'").evaluate(variables) == "aGk="
    assert rule("{1: 'one'}").evaluate(variables) == {"1": "one"}


def test_bindings_serve_many_expressions() -> None:
    bound = bind({"data": {"orderAmt": 150, "orderId": "o-1"}, "event": {"type": "t"}})
    assert rule("data.orderAmt > 100").evaluate_bool(bound)
    assert rule("data.orderId").evaluate(bound) == "o-1"
    with pytest.raises(EvaluationError, match="no such key: nope"):
        rule("data.nope").evaluate(bound)


def test_state_may_be_null_in_projections() -> None:
    expr = compile_expression("state == null ? 1 : state.n + 1", VARIABLES_PROJECTION)
    assert expr.evaluate({"state": None, "data": {}, "event": {}, "key": "k"}) == 1
    assert expr.evaluate({"state": {"n": 1}, "data": {}, "event": {}, "key": "k"}) == 2


# Templates ----------------------------------------------------------------------------------------

VARS = {"data": {"n": 3, "m": {"q": [1, 2]}, "s": "str", "f": 1.5, "b": True, "z": None}}


def render(value: object) -> object:
    return compile_template(value, VARIABLES_RULE).render(VARS)


def test_whole_string_keeps_the_type() -> None:
    assert render("${{ data.n }}") == 3
    assert render("${{data.m}}") == {"q": [1, 2]}
    assert render("${{ data.z }}") is None
    assert render("${{ data.b }}") is True
    assert render("${{ {'k': {'z': 1}} }}") == {"k": {"z": 1}}


def test_mixed_text_interpolates_as_text() -> None:
    assert render("n=${{ data.n }} s=${{ data.s }}") == "n=3 s=str"
    assert render("f=${{ data.f }} b=${{ data.b }} z=[${{ data.z }}]") == "f=1.5 b=true z=[]"
    assert render("m=${{ data.m }}") == 'm={"q":[1,2]}'
    assert render(" ${{ data.n }}") == " 3"


def test_nested_dicts_and_lists_are_templated() -> None:
    value = {"a": "${{ data.n }}", "b": ["x ${{ data.s }}", 7, {"c": "${{ data.m }}"}], "d": None}
    assert render(value) == {"a": 3, "b": ["x str", 7, {"c": {"q": [1, 2]}}], "d": None}


def test_keys_are_not_templated() -> None:
    assert render({"${{ data.n }}": 1}) == {"${{ data.n }}": 1}


def test_constant_template() -> None:
    template = compile_template({"a": ["b", 1]}, VARIABLES_RULE)
    assert template.is_constant and template.expressions == []
    assert template.render({}) == {"a": ["b", 1]}


def test_expressions_are_listed() -> None:
    template = compile_template({"a": "${{ data.n }}", "b": "${{ data.s }}!"}, VARIABLES_RULE)
    assert [e.source for e in template.expressions] == ["data.n", "data.s"]
    assert not template.is_constant


def test_unterminated_template() -> None:
    with pytest.raises(ExpressionError, match="unterminated") as info:
        compile_template("abc ${{ data.x", VARIABLES_RULE)
    assert (info.value.line, info.value.column) == (1, 5)


def test_template_error_column_is_relative_to_the_string() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_template({"body": ["line1\nxx ${{ data.x > }} yy"]}, VARIABLES_RULE)
    assert (info.value.line, info.value.column) == (2, 16)
    problem = find_template_error("id: ${{  foo }}", VARIABLES_RULE)
    assert problem is not None and (problem.line, problem.column) == (1, 10)
    assert find_template_error("${{ data.n }}", VARIABLES_RULE) is None


def test_render_error_is_an_evaluation_error() -> None:
    with pytest.raises(EvaluationError, match="no such key: missing"):
        render({"a": "${{ data.missing }}"})
