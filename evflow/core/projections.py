"""The fold: what one event does to one row of a projection (SPEC §3 Projections).

``state = apply(state, event, handler)``, with ``None`` standing for "no row". Storage and
checkpoints are :mod:`evflow.services.replay`'s business; this module is pure apart from
importing the Python handlers a rule file names.

Semantics (documented for rule authors in the rules reference):

- The **key** is a CEL expression over ``data`` and ``event`` (``state`` and ``key`` are null
  while it is evaluated). A string key is used as is; any other value is stored as its compact JSON
  text (``5`` -> ``"5"``, ``true`` -> ``"true"``). A key that is null or fails to evaluate skips the
  event *for that projection*: it is counted and reported as a warning, never an error.
- ``if`` guards a handler; false, or failing at run time (SPEC: a failing ``if`` does not match),
  leaves the row untouched, including its ``seq``.
- ``upsert``: state = data. ``merge``: state = state + data (shallow; a missing row starts from
  ``{}``). ``delete``: the row goes (deleting a missing row is a no-op).
- Operations: every template is rendered against the row *before* the event (``state`` is null
  for a new row), then applied in the order ``set``, ``inc``, ``append``, ``unset``: ``set``
  assigns fields; ``inc`` adds a number (a missing field counts as 0; a non-number is a handler
  error); ``append`` appends the value as one element to a list field (missing: a new list);
  ``unset`` removes fields. A new row starts from ``{}``.
- ``python: package.module:function`` is imported from the project directory (the working
  directory, put on ``sys.path``) and called as ``function(state, event)``; it returns the new state
  (a dict) or ``None`` to delete the row. It must not mutate ``event``.
- An expression or template that fails inside a handler, an ``inc`` on a non-number, or a Python
  handler that raises is a :class:`HandlerError` naming the projection, the event's ``seq`` and
  type, and the reason: the replay stops there.

Speed: keys and templates that are plain field paths are read straight from the event
(:mod:`evflow.core.readers`), and an operations handler does the usual event in fewer steps than
the one that reports its errors, with the same result (see ``_ops_fold``).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from evflow.core.expressions import EvaluationError, json_type
from evflow.core.readers import (
    Getter,
    data_keys,
    expression_getter,
    field_getters,
    key_text,
)
from evflow.core.readers import (
    Vars as Vars,  # the variables a fold reads, made by its callers
)
from evflow.core.rules import Handler, Projection
from evflow.errors import EvflowError

Event = dict[str, Any]
State = dict[str, Any]


class _Skip:
    """The handler did not apply (its ``if`` said no): the row is left as it was."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIP"


SKIP: Any = _Skip()


class HandlerError(EvflowError):
    """A projection handler failed on an event: the replay stops there."""

    def __init__(self, projection: str, seq: int | None, etype: str, reason: str) -> None:
        where = f"event seq {seq}" if seq is not None else "an event"
        super().__init__(
            f"projection {projection}: {where} ({etype}): {reason}",
            hint="fix the handler (the log cannot change), then run: evflow replay " + projection,
        )
        self.projection = projection
        self.seq = seq
        self.etype = etype
        self.reason = reason


class HandlerImportError(EvflowError):
    """A ``python:`` handler that cannot be imported."""


class _Failure(Exception):
    """Internal: a handler failed; the caller adds the projection and seq."""


FoldFailure = _Failure  # what a Fold raises (CompiledProjection.step makes it a HandlerError)


# -- handlers -----------------------------------------------------------------------------------

Fold = Callable[[Any, Vars], Any]  # (state | None, vars) -> new state | None | SKIP


def load_python(ref: str, project_dir: str | None = None) -> Callable[[Any, Event], Any]:
    """Import ``package.module:function`` with the project directory (default cwd) on sys.path."""
    module_name, _, function_name = ref.partition(":")
    base = os.path.abspath(project_dir or os.getcwd())
    if base not in sys.path:
        sys.path.insert(0, base)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to see, in one line
        raise HandlerImportError(
            f"python handler {ref}: cannot import {module_name}: {type(exc).__name__}: {exc}",
            hint=f"the module is imported from the project directory ({base}); check the name and "
            "that it imports cleanly",
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise HandlerImportError(
            f"python handler {ref}: {module_name} has no function {function_name}",
            hint="python: package.module:function names a function defined in that module",
        )
    return function


def _python_fold(function: Callable[[Any, Event], Any], ref: str) -> Fold:
    def fold(state: Any, v: Vars) -> Any:
        try:
            result = function(state, v.event)
        except Exception as exc:  # noqa: BLE001 - reported with the event's seq
            raise _Failure(f"python handler {ref} raised {type(exc).__name__}: {exc}") from None
        if result is not None and not isinstance(result, dict):
            raise _Failure(
                f"python handler {ref} returned {type(result).__name__}, expected a dict or None"
            )
        return result

    return fold


def _ops_fold(handler: Handler, fast: bool = True) -> Fold:
    sets = field_getters(handler.set, "set")
    incs = field_getters(handler.inc, "inc")
    appends = field_getters(handler.append, "append")
    unset = handler.unset

    def evaluate(fields: list[tuple[str, Getter]], v: Vars, op: str) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for name, get in fields:
            try:
                value = get(v)
            except EvaluationError as exc:
                raise _Failure(f"{op} {name}: {exc}" if name else f"{op}: {exc}") from None
            if name:
                out.append((name, value))
            else:
                out.extend(value.items())
        return out

    named = all(name for name, _ in (*sets, *incs, *appends))

    def fold(state: Any, v: Vars) -> Any:
        # every template sees the row as it was before the event, so evaluate all, then change
        try:
            if not named:
                raise EvaluationError("")
            set_values = [(name, get(v)) for name, get in sets]
            inc_values = [(name, get(v)) for name, get in incs]
            append_values = [(name, get(v)) for name, get in appends]
        except EvaluationError:  # again, one by one, to say which field and to expand maps
            set_values = evaluate(sets, v, "set")
            inc_values = evaluate(incs, v, "inc")
            append_values = evaluate(appends, v, "append")
        new = dict(state) if state else {}
        for name, value in set_values:
            new[name] = value
        for name, value in inc_values:
            if type(value) not in (int, float):
                raise _Failure(f"inc {name}: expected a number, got {_shown(value)}")
            old = new.get(name, 0)
            if old is None:
                old = 0
            elif type(old) not in (int, float):
                raise _Failure(f"inc {name}: the field holds {_shown(old)}, not a number")
            new[name] = old + value
        for name, value in append_values:
            grown = _appended(new.get(name), value)
            if grown is None:
                raise _Failure(f"append {name}: the field holds {_shown(new[name])}, not a list")
            new[name] = grown
        for name in unset:
            new.pop(name, None)
        return new

    if not fast or not named:
        return fold
    # ``quick`` gives fold's answer for the usual event with fewer steps: no lists, a
    # ``${{ data.KEY }}`` field read in place. Anything unusual (a field that fails, a value of
    # the wrong type) is fold's to do again, and to report.
    fast_sets = data_keys(handler.set, sets)
    fast_incs = data_keys(handler.inc, incs)
    fast_appends = data_keys(handler.append, appends)

    def quick(state: Any, v: Vars) -> Any:
        new = dict(state) if state else {}
        data = v.data
        try:
            for name, key, get in fast_sets:
                new[name] = data[key] if key is not None else get(v)
            for name, key, get in fast_incs:
                value = data[key] if key is not None else get(v)
                old = new.get(name)
                if old is None:
                    old = 0
                if type(value) not in _NUMBERS or type(old) not in _NUMBERS:
                    return fold(state, v)
                new[name] = old + value
            for name, key, get in fast_appends:
                grown = _appended(new.get(name), data[key] if key is not None else get(v))
                if grown is None:
                    return fold(state, v)
                new[name] = grown
        except (EvaluationError, KeyError, TypeError, ArithmeticError):
            # (an inc that overflows may hide a later field's error, which fold reports first)
            return fold(state, v)
        for name in unset:
            new.pop(name, None)
        return new

    return quick


_NUMBERS = (int, float)


def _appended(old: Any, value: Any) -> list[Any] | None:
    """The list field ``old`` (None: missing) with ``value`` at its end; None when it holds
    something else than a list."""
    if old is None:
        return [value]
    if type(old) is list:
        return [*old, value]
    return None


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{json_type(value)} {text}"


def _data_map(v: Vars, handler: str) -> dict[str, Any]:
    if type(v.data) is not dict:
        kind = "no data" if v.data is None else f"data that is {type(v.data).__name__}"
        raise _Failure(f"{handler} needs data that is a map (a JSON object), got {kind}")
    return v.data


def _upsert(state: Any, v: Vars) -> Any:
    return dict(_data_map(v, "upsert"))


def _merge(state: Any, v: Vars) -> Any:
    data = _data_map(v, "merge")
    return {**state, **data} if state else dict(data)


def _delete(state: Any, v: Vars) -> Any:
    return None


@lru_cache(maxsize=1024)
def compile_handler(handler: Handler, project_dir: str | None = None) -> Fold:
    """The handler as a fast function ``(state, Vars) -> new state | None | SKIP``.

    Raises :class:`HandlerImportError` for a ``python:`` handler that does not import.
    """
    if handler.kind == "upsert":
        fold: Fold = _upsert
    elif handler.kind == "merge":
        fold = _merge
    elif handler.kind == "delete":
        fold = _delete
    elif handler.kind == "python":
        ref = handler.python or ""
        fold = _python_fold(load_python(ref, project_dir), ref)
    elif handler.kind == "ops":
        fold = _ops_fold(handler)
    else:
        raise EvflowError(f"unknown projection handler kind {handler.kind!r}")
    if handler.condition is None:
        return fold
    condition = handler.condition

    def guarded(state: Any, v: Vars) -> Any:
        try:
            if not condition.evaluate_bool(v.bound()):
                return SKIP
        except EvaluationError:
            return SKIP  # SPEC: an `if` that fails at run time does not match
        return fold(state, v)

    return guarded


def apply(
    state: State | None, event: Event, handler: Handler, *, key: Any = None, projection: str = ""
) -> State | None | Any:
    """One step of the fold: the row's new state, ``None`` (deleted) or ``SKIP`` (untouched).

    ``state`` is the row before the event (``None``: no row). Raises :class:`HandlerError`.
    """
    fold = compile_handler(handler)
    v = Vars(event, state, key)
    try:
        return fold(state, v)
    except _Failure as exc:
        raise HandlerError(projection, event.get("seq"), event.get("type", ""), str(exc)) from None


class CompiledProjection:
    """A projection ready to fold events: its key getter and a per-type handler cache."""

    __slots__ = ("_by_type", "_key", "name", "project_dir", "projection")

    def __init__(self, projection: Projection, project_dir: str | None = None) -> None:
        self.projection = projection
        self.name = projection.name
        self.project_dir = project_dir
        self._key = expression_getter(projection.key)
        self._by_type: dict[str, Fold | None] = {}
        for _, handler in projection.handlers:  # import python handlers now, not mid-replay
            compile_handler(handler, project_dir)

    def fold_for(self, etype: str) -> Fold | None:
        try:
            return self._by_type[etype]
        except KeyError:
            handler = self.projection.handler_for(etype)
            fold = None if handler is None else compile_handler(handler, self.project_dir)
            self._by_type[etype] = fold
            return fold

    def key(self, v: Vars) -> tuple[str | None, str | None]:
        """``(key text, None)``, or ``(None, why)`` when the event is skipped."""
        try:
            value = self._key(v)
        except EvaluationError as exc:
            return None, f"key {self.projection.key.source}: {exc}"
        if value is None:
            return None, f"key {self.projection.key.source} is null"
        v.key = value
        return (value if type(value) is str else key_text(value)), None

    def step(self, fold: Fold, state: Any, v: Vars, seq: int | None, etype: str) -> Any:
        """Apply ``fold``; a failure becomes a HandlerError naming this projection and ``seq``."""
        try:
            return fold(state, v)
        except _Failure as exc:
            raise HandlerError(self.name, seq, etype, str(exc)) from None
