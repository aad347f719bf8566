"""``dataclass``, ``field`` and ``replace`` for the modules on ``emit``'s import path, at a fraction
of the import cost of :mod:`dataclasses`.

``emit`` runs once per event from shell scripts, so what its modules cost to import is paid per
event. The standard decorator imports ``inspect`` (~9 ms) and compiles six generated methods per
class (~0.9 ms a class, 26 classes on the emit path). This one compiles one small block per class
and imports nothing heavy. It supports what evflow uses, with the standard semantics:

- fields from the class annotations, in order; defaults, ``field(default=…,
  default_factory=…, repr=…, compare=…)``; a field without a default after one with a default is
  a TypeError, as with the standard decorator;
- ``__init__`` (defaults evaluated once, factories per instance), ``__repr__``
  (``Name(a=1, b='x')``, ``repr=False`` fields left out), ``__eq__`` (same class, fields with
  ``compare=True`` compared as a tuple), ``__hash__`` (frozen: the hash of that tuple; not
  frozen: unhashable), ``frozen=True`` (assigning or deleting a field raises
  :class:`FrozenInstanceError`, an ``AttributeError`` like the standard one), ``slots=True``
  (the class is rebuilt with ``__slots__``, and pickles);
- ``__match_args__``; :func:`fields_of` lists the fields and :func:`replace` makes a changed
  copy; ``dataclasses.is_dataclass``, ``fields``, ``replace`` and ``asdict`` work on these classes
  too (their ``__dataclass_fields__`` is made, importing :mod:`dataclasses`, on first use).

``ClassVar`` annotations, ``__post_init__``, ``InitVar``, ``kw_only`` and ``order`` are not
supported (a class that needs them uses :mod:`dataclasses`). tests/test_structs.py holds these
classes to the standard decorator's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")

_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "MISSING"})()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen instance (as ``dataclasses.FrozenInstanceError``)."""


class Field:
    __slots__ = ("compare", "default", "default_factory", "name", "repr", "type")

    def __init__(
        self,
        default: Any = _MISSING,
        default_factory: Any = _MISSING,
        repr: bool = True,  # noqa: A002 - the standard keyword
        compare: bool = True,
    ) -> None:
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.name = ""
        self.type: Any = None


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | Any = _MISSING,
    repr: bool = True,  # noqa: A002 - the standard keyword
    compare: bool = True,
) -> Any:
    """A field with options, as ``dataclasses.field``."""
    return Field(default, default_factory, repr, compare)


_FIELDS = "__evflow_fields__"


def fields_of(obj_or_cls: Any) -> tuple[Field, ...]:
    """The fields of a class made by :func:`dataclass` (or of an instance of one), in order."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    found: tuple[Field, ...] = getattr(cls, _FIELDS)
    return found


def replace(obj: T, **changes: Any) -> T:
    """A copy of ``obj`` with some fields changed (as ``dataclasses.replace``)."""
    values = {f.name: getattr(obj, f.name) for f in fields_of(obj)}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__qualname__} has no field(s) {', '.join(sorted(unknown))}")
    values.update(changes)
    return type(obj)(**values)


class _DataclassFields:
    """``__dataclass_fields__`` made on first access, so that :mod:`dataclasses`' functions
    (``is_dataclass``, ``fields``, ``replace``, ``asdict``) take these classes too; only code
    that introspects pays for importing :mod:`dataclasses`."""

    def __get__(self, obj: Any, cls: type) -> dict[str, Any]:
        import dataclasses

        made: dict[str, Any] = {}
        for f in getattr(cls, _FIELDS):
            options: dict[str, Any] = {"repr": f.repr, "compare": f.compare}
            if f.default is not _MISSING:
                options["default"] = f.default
            if f.default_factory is not _MISSING:
                options["default_factory"] = f.default_factory
            std = dataclasses.field(**options)
            std.name, std.type = f.name, f.type
            std._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            made[f.name] = std
        type.__setattr__(cls, "__dataclass_fields__", made)
        return made


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field '{name}'")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field '{name}'")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in fields_of(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(fields_of(self), state, strict=True):
        object.__setattr__(self, f.name, value)


class _Methods:
    """The generated methods of one class, compiled when one of them is first called: each stub
    compiles them all, puts the real ones on the class in its own place, and calls its own."""

    def __init__(self, code: str, env: dict[str, Any]) -> None:
        self.code = code
        self.env = env
        self.owner: type | None = None
        self.made = False

    def stub(self, name: str) -> Callable[..., Any]:
        def first_call(instance: Any, /, *args: Any, **kwargs: Any) -> Any:  # any field names
            if not self.made:
                exec(self.code, self.env)  # noqa: S102 - our own generated text, as dataclasses does
                self.made = True
                for method in ("__init__", "__repr__", "__eq__", "__hash__"):
                    owner = self.owner
                    current = owner.__dict__.get(method) if owner is not None else None
                    if getattr(current, "__evflow_stub__", None) is self:
                        type.__setattr__(owner, method, self.env[method])
            return self.env[name](instance, *args, **kwargs)

        first_call.__name__ = first_call.__qualname__ = name
        first_call.__evflow_stub__ = self  # type: ignore[attr-defined]
        return first_call


def _process(cls: type, eq: bool, frozen: bool, slots: bool, repr_: bool) -> type:
    annotations = cls.__dict__.get("__annotations__", {})
    found: list[Field] = []
    for base in reversed(cls.__mro__[1:]):  # fields of decorated bases come first
        for f in getattr(base, _FIELDS, ()):
            found = [x for x in found if x.name != f.name] + [f]
    for name, annotation in annotations.items():
        if isinstance(annotation, str) and annotation.startswith(("ClassVar", "typing.ClassVar")):
            raise TypeError(f"{cls.__qualname__}.{name}: ClassVar is not supported here")
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        f.type = annotation
        found = [x for x in found if x.name != name] + [f]
        if isinstance(value, Field):
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
    seen_default = False
    for f in found:
        has_default = f.default is not _MISSING or f.default_factory is not _MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument '{f.name}' follows default argument")
        seen_default = seen_default or has_default

    env: dict[str, Any] = {"_MISSING": _MISSING, "_object_setattr": object.__setattr__}
    params, body = [], []
    for i, f in enumerate(found):
        if f.default is not _MISSING:
            env[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        elif f.default_factory is not _MISSING:
            env[f"_f{i}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
        else:
            params.append(f.name)
        value = (
            f"_f{i}() if {f.name} is _MISSING else {f.name}"
            if (f.default_factory is not _MISSING)
            else f.name
        )
        if frozen:
            body.append(f"  _object_setattr(self, {f.name!r}, {value})")
        else:
            body.append(f"  self.{f.name} = {value}")
    lines = [f"def __init__(self, {', '.join(params)}):", *(body or ["  pass"])]
    if repr_:
        shown = ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in found if f.repr)
        lines += ["def __repr__(self):", f"  return f'{{type(self).__qualname__}}({shown})'"]
    compared = [f"self.{f.name}" for f in found if f.compare]
    other = [f"other.{f.name}" for f in found if f.compare]
    mine = f"({', '.join(compared)},)" if compared else "()"
    theirs = f"({', '.join(other)},)" if other else "()"
    if eq:
        lines += [
            "def __eq__(self, other):",
            "  if other.__class__ is not self.__class__:",
            "    return NotImplemented",
            f"  return {mine} == {theirs}",
        ]
        if frozen:
            lines += ["def __hash__(self):", f"  return hash({mine})"]
    # The methods are compiled on first use, not here: compiling them is ~0.2 ms a class, and
    # emit's path imports some thirty classes whose methods it never calls (a rule set comes from
    # the cache by unpickling, which calls no __init__).
    methods = _Methods("\n".join(lines), env)

    namespace = dict(cls.__dict__)
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    namespace["__init__"] = methods.stub("__init__")
    if repr_ and "__repr__" not in cls.__dict__:
        namespace["__repr__"] = methods.stub("__repr__")
    if eq and "__eq__" not in cls.__dict__:
        namespace["__eq__"] = methods.stub("__eq__")
        if frozen:
            namespace["__hash__"] = methods.stub("__hash__")
        elif "__hash__" not in cls.__dict__:
            namespace["__hash__"] = None
    if frozen:
        namespace["__setattr__"] = _frozen_setattr
        namespace["__delattr__"] = _frozen_delattr
    namespace[_FIELDS] = tuple(found)
    namespace["__dataclass_fields__"] = _DataclassFields()
    namespace["__match_args__"] = tuple(f.name for f in found)
    if slots:
        inherited = {n for b in cls.__mro__[1:] for n in getattr(b, "__slots__", ())}
        namespace["__slots__"] = tuple(f.name for f in found if f.name not in inherited)
        for f in found:
            namespace.pop(f.name, None)  # class attributes would shadow the slots
        if frozen:
            namespace["__getstate__"] = _getstate
            namespace["__setstate__"] = _setstate
        new = type(cls)(cls.__name__, cls.__bases__, namespace)
        new.__qualname__ = cls.__qualname__
        methods.owner = new
        return new
    for name, value in namespace.items():
        if name not in cls.__dict__ or cls.__dict__[name] is not value:
            setattr(cls, name, value)
    methods.owner = cls
    return cls


@overload
def dataclass(cls: type[T], /) -> type[T]: ...
@overload
def dataclass(
    *, eq: bool = True, frozen: bool = False, slots: bool = False, repr: bool = True
) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(
    cls: Any = None,
    /,
    *,
    eq: bool = True,
    frozen: bool = False,
    slots: bool = False,
    repr: bool = True,  # noqa: A002 - the standard keyword
) -> Any:
    """The class with generated methods, as ``dataclasses.dataclass`` (see the module doc)."""

    def wrap(c: type) -> type:
        return _process(c, eq, frozen, slots, repr)

    return wrap if cls is None else wrap(cls)
