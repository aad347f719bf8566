"""Reading the values a projection's key and handlers need from one event (and the row).

Keys and templates that are plain field paths (``data.userid``, ``${{ event.time }}``), by far
the common case, are read straight from the event instead of going through CEL, with the same
results and the same error messages; anything else is evaluated by CEL, with the variables bound
once per event (:class:`Vars`). Used by :mod:`evflow.core.projections`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from evflow.core.events import event_data
from evflow.core.expressions import (
    VARIABLES_PROJECTION,
    Bindings,
    EvaluationError,
    Expression,
    Template,
    bind,
    compile_template,
)

Event = dict[str, Any]

_PATH = re.compile(r"\s*(data|event|state|key)((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*")
_WHOLE_PATH = re.compile(r"\$\{\{\s*([A-Za-z_][A-Za-z0-9_.\s]*?)\s*\}\}")
_NOT_MAP = "field access on a value that is not a map"


class Vars:
    """The variables of one evaluation: plain values, bound for CEL only when CEL is needed."""

    __slots__ = ("_bound", "data", "event", "key", "state")

    def __init__(self, event: Event, state: Any = None, key: Any = None) -> None:
        self.event = event
        # any JSON value, bytes for data_base64, None without data: a handler that needs a map
        # says so (EvaluationError), as for a missing field
        self.data: Any = event.get("data") if "data_base64" not in event else event_data(event)
        self.state = state
        self.key = key
        self._bound: Bindings | None = None

    def set_state(self, state: Any) -> None:
        """The row's state before the event (bindings made earlier no longer hold)."""
        self.state = state
        self._bound = None

    def bound(self) -> Bindings:
        if self._bound is None:
            self._bound = bind(
                {"data": self.data, "event": self.event, "state": self.state, "key": self.key}
            )
        return self._bound


Getter = Callable[[Vars], Any]


def _path_getter(root: str, names: tuple[str, ...]) -> Getter:
    def get(v: Vars) -> Any:
        value = getattr(v, root)
        for name in names:
            if type(value) is not dict:
                raise EvaluationError(_NOT_MAP)
            try:
                value = value[name]
            except KeyError:
                raise EvaluationError(f"no such key: {name}") from None
        return value

    if len(names) == 1 and root == "data":  # the common data.userid: one lookup, no loop
        (only,) = names

        def get_data(v: Vars) -> Any:
            try:
                return v.data[only]
            except KeyError:
                raise EvaluationError(f"no such key: {only}") from None
            except TypeError:
                raise EvaluationError(_NOT_MAP) from None

        return get_data
    if len(names) == 1:
        (only,) = names

        def get1(v: Vars) -> Any:
            value = getattr(v, root)
            if type(value) is not dict:
                raise EvaluationError(_NOT_MAP)
            try:
                return value[only]
            except KeyError:
                raise EvaluationError(f"no such key: {only}") from None

        return get1
    return get


def _split_path(source: str) -> tuple[str, tuple[str, ...]] | None:
    match = _PATH.fullmatch(source)
    if match is None:
        return None
    names = tuple(n.strip() for n in match[2].split(".")[1:])
    return match[1], names


def expression_getter(expression: Expression) -> Getter:
    """A function of :class:`Vars` giving the expression's value; raises EvaluationError."""
    path = _split_path(expression.source)
    if path is not None and path[1]:
        return _path_getter(*path)
    return lambda v: expression.evaluate(v.bound())


def template_getter(template: Template) -> Getter:
    """A function of :class:`Vars` rendering the template (field paths read directly)."""
    if template.is_constant:
        value = template.render({})
        return lambda v: value
    if template.source is None:
        return lambda v: template.render(v.bound())
    return _node_getter(template.source)


def _node_getter(value: Any) -> Getter:
    if isinstance(value, str):
        if "${{" not in value:
            return lambda v: value
        whole = _WHOLE_PATH.fullmatch(value)
        path = _split_path(whole[1]) if whole else None
        if path is not None and path[1]:
            return _path_getter(*path)
        compiled = compile_template(value, VARIABLES_PROJECTION)
        return lambda v: compiled.render(v.bound())
    if isinstance(value, Mapping):
        items = [(k, _node_getter(x)) for k, x in value.items()]
        return lambda v: {k: g(v) for k, g in items}
    if isinstance(value, list | tuple):
        getters = [_node_getter(x) for x in value]
        return lambda v: [g(v) for g in getters]
    return lambda v: value


def field_getters(template: Template | None, op: str) -> list[tuple[str, Getter]]:
    if template is None:
        return []
    source = template.source
    if isinstance(source, Mapping):
        return [(str(k), _node_getter(x)) for k, x in source.items()]
    whole = template_getter(template)  # not written as a map: render, then check

    def fields(v: Vars) -> Any:
        value = whole(v)
        if not isinstance(value, dict):
            raise EvaluationError(f"{op} must give a map of field to value")
        return value

    return [("", fields)]


def key_text(value: Any) -> str:
    """How a key value is stored: strings as they are, anything else as compact JSON."""
    if type(value) is str:
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def data_keys(
    template: Template | None, getters: list[tuple[str, Getter]]
) -> list[tuple[str, str | None, Getter]]:
    """Each field with the key it reads from ``data`` when it is just ``${{ data.KEY }}``."""
    source = template.source if template is not None else None
    if not isinstance(source, Mapping):
        return [(name, None, get) for name, get in getters]
    nodes = source.values()
    return [(name, _data_key(node), get) for (name, get), node in zip(getters, nodes, strict=True)]


def _data_key(node: Any) -> str | None:
    whole = _WHOLE_PATH.fullmatch(node) if isinstance(node, str) else None
    path = _split_path(whole[1]) if whole else None
    if path is not None and path[0] == "data" and len(path[1]) == 1:
        return path[1][0]
    return None
