"""The fold: every handler operation, guards, keys, python handlers (no storage involved)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from evflow.core.expressions import VARIABLES_PROJECTION, Template, compile_template
from evflow.core.projections import (
    SKIP,
    CompiledProjection,
    FoldFailure,
    HandlerError,
    HandlerImportError,
    Vars,
    _ops_fold,
    apply,
)
from evflow.core.rules import Handler, Projection
from evflow.rulefiles.loader import load_rules

FIXTURES = Path(__file__).parent / "fixtures"

RULES = """
version: 1
projections:
  - name: p
    key: data.id
    on:
      a.upsert: upsert
      a.merge: merge
      a.delete: delete
      a.ops:
        set:
          name: "${{ data.name }}"
          label: "n=${{ data.n }}"
          prev: "${{ state == null ? 0 : state.n }}"
        inc: {n: "${{ data.n }}", calls: 1}
        append: {seen: "${{ event.seq }}"}
        unset: [gone]
      a.guarded:
        if: data.n > 10
        set: {big: true}
      a.badinc:
        inc: {n: "${{ data.text }}"}
      a.py:
        python: handlers.tally:count_words
      a.pyfail:
        python: handlers.tally:explode
"""


@pytest.fixture
def proj(project: Path) -> Projection:
    (project / "rules").mkdir()
    (project / "rules" / "p.yaml").write_text(RULES)
    shutil.copytree(FIXTURES / "handlers", project / "handlers")
    p = load_rules(project / "rules").projection("p")
    assert p is not None
    return p


def ev(etype: str, seq: int = 1, **data: object) -> dict:
    return {"type": etype, "seq": seq, "time": "2020-01-01T00:00:00.000000Z", "data": data}


def step(p: Projection, state: object, event: dict) -> object:
    handler = p.handler_for(event["type"])
    assert handler is not None
    return apply(state, event, handler, projection=p.name)  # type: ignore[arg-type]


def test_upsert_merge_delete(proj: Projection) -> None:
    s = step(proj, None, ev("a.upsert", id="x", a=1, b=2))
    assert s == {"id": "x", "a": 1, "b": 2}
    s = step(proj, s, ev("a.merge", id="x", b=3, c=4))
    assert s == {"id": "x", "a": 1, "b": 3, "c": 4}
    assert step(proj, None, ev("a.merge", id="y", b=1)) == {"id": "y", "b": 1}
    assert step(proj, s, ev("a.delete", id="x")) is None
    assert step(proj, None, ev("a.upsert", id="x", a=9)) == {"id": "x", "a": 9}  # re-created


def test_ops_set_inc_append_unset(proj: Projection) -> None:
    s = step(proj, None, ev("a.ops", seq=5, id="x", name="A", n=2))
    assert s == {"name": "A", "label": "n=2", "prev": 0, "n": 2, "calls": 1, "seen": [5]}
    s = {**s, "gone": 1}  # type: ignore[dict-item]
    s = step(proj, s, ev("a.ops", seq=6, id="x", name="B", n=3.5))
    assert s == {"name": "B", "label": "n=3.5", "prev": 2, "n": 5.5, "calls": 2, "seen": [5, 6]}


def test_if_guard(proj: Projection) -> None:
    assert step(proj, None, ev("a.guarded", id="x", n=1)) is SKIP
    assert step(proj, {"a": 1}, ev("a.guarded", id="x", n=11)) == {"a": 1, "big": True}
    assert step(proj, None, ev("a.guarded", id="x")) is SKIP  # a failing `if` does not match


def test_inc_of_a_non_number_is_a_handler_error(proj: Projection) -> None:
    with pytest.raises(HandlerError) as info:
        step(proj, None, ev("a.badinc", seq=42, id="x", text="hello"))
    message = str(info.value)
    assert "projection p" in message and "seq 42" in message and "inc n" in message
    with pytest.raises(HandlerError, match="no such key: text"):
        step(proj, None, ev("a.badinc", seq=43, id="x"))


def test_python_handler(proj: Projection) -> None:
    s = step(proj, None, ev("a.py", id="x", text="one two three"))
    assert s == {"words": 3}
    assert step(proj, s, ev("a.py", id="x", text="four")) == {"words": 4}
    assert step(proj, s, ev("a.py", id="x", text="")) is None
    with pytest.raises(HandlerError, match="ValueError: boom"):
        step(proj, None, ev("a.pyfail", seq=7, id="x"))


def test_python_handler_that_does_not_import(project: Path) -> None:
    (project / "rules").mkdir()
    (project / "rules" / "p.yaml").write_text(
        "version: 1\nprojections:\n  - name: q\n    key: data.id\n"
        "    on: {a.b: {python: nosuchpkg.mod:fn}}\n"
    )
    p = load_rules(project / "rules").projection("q")
    assert p is not None
    with pytest.raises(HandlerImportError, match="cannot import nosuchpkg.mod"):
        CompiledProjection(p)


def test_keys(proj: Projection) -> None:
    compiled = CompiledProjection(proj)
    assert compiled.key(Vars(ev("a.upsert", id="x"))) == ("x", None)
    assert compiled.key(Vars(ev("a.upsert", id=5))) == ("5", None)
    key, why = compiled.key(Vars(ev("a.upsert")))
    assert key is None and why is not None and "no such key: id" in why
    key, why = compiled.key(Vars(ev("a.upsert", id=None)))
    assert key is None and "null" in (why or "")


# -- the quick operations fold answers as the full one ----------------------------------------

_SOURCES = st.sampled_from(
    [
        "${{ data.a }}",
        "${{ data.b }}",
        "${{ data.missing }}",
        "${{ event.seq }}",
        "${{ state.n }}",
        "${{ data.a + 1 }}",
        "n=${{ data.a }}",
        1,
        2.5,
        "x",
        True,
        None,
        [1],
    ]
)
_NAMES = st.sampled_from(["n", "m", "s"])
_FIELDS = st.dictionaries(_NAMES, _SOURCES, max_size=3) | st.just("${{ data }}")
_VALUES = (
    st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=2)
    | st.none()
    | st.booleans()
    | st.lists(st.integers(0, 3), max_size=2)
)
_DATA = (
    st.dictionaries(st.sampled_from(["a", "b"]), _VALUES, max_size=2)
    | st.none()
    | st.lists(_VALUES, max_size=2)
    | st.text(max_size=2)
)
_STATES = st.none() | st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=3)


@settings(max_examples=1500, deadline=None)
@given(_FIELDS, _FIELDS, _FIELDS, st.lists(_NAMES, max_size=2, unique=True), _DATA, _STATES)
@example({}, {"n": 1}, {}, [], {}, {"n": True})  # bool is not a number to inc
@example({}, {"n": "${{ data.a }}"}, {}, [], {"a": False}, None)
@example({}, {"n": 1}, {}, [], {}, {"n": "1"})
@example({}, {"n": 1}, {}, [], {}, {"n": None})  # null counts as 0
@example({"n": 2.5}, {"n": "${{ data.a }}"}, {}, ["m"], {"a": 2}, {"m": 1})
@example({}, {}, {"n": 1}, [], {}, {"n": "ab"})  # append to a field that is not a list
@example({}, {}, {"n": "${{ data.a }}"}, [], {"a": [1]}, {"n": [0]})
@example({"n": "${{ data.a }}"}, {}, {}, [], ["a"], None)  # data that is not a map
@example({"n": "${{ data.a }}"}, {}, {}, [], "ab", None)
@example({"n": "${{ data.a }}"}, {}, {}, [], {"b": 1}, None)  # a missing key
@example({"n": "${{ state.n }}"}, {}, {}, [], {}, None)
# an inc that overflows (an int too large for a float) before a field that fails: the error is
# the failing field's, as the full fold reads every field first
@example({}, {"n": "${{ data.a }}", "m": "${{ data.missing }}"}, {}, [], {"a": 1.5}, {"n": 10**400})
def test_the_quick_ops_fold_answers_as_the_full_one(
    sets: Any, incs: Any, appends: Any, unset: list[str], data: Any, state: Any
) -> None:
    """Same new row, or the same failure, for any fields, data and row: wrong types, missing
    keys, CEL errors, whole-map templates (which the quick fold leaves to the full one)."""

    def template(source: Any) -> Template | None:
        return compile_template(source, VARIABLES_PROJECTION) if source else None

    handler = Handler(
        "ops", set=template(sets), inc=template(incs), append=template(appends), unset=tuple(unset)
    )
    full, quick = _ops_fold(handler, fast=False), _ops_fold(handler)
    if all(isinstance(f, dict) for f in (sets, incs, appends)):
        assert quick is not full
    event = {"type": "t", "seq": 3, "time": "2020-01-01T00:00:00.000000Z", "data": data}

    def answer(fold: Any) -> str:
        try:
            return repr(fold(state, Vars(event, state)))
        except FoldFailure as exc:
            return f"failure: {exc}"

    assert answer(quick) == answer(full)
