"""evflow.core.structs behaves as the standard dataclasses on what evflow uses (issue 16: the
emit path's modules use it because it costs a fraction of dataclasses to import)."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evflow.core import structs
from tests.conftest import REPO


def _pair(frozen: bool, slots: bool) -> tuple[type, type]:
    made = []
    for deco, fld in (
        (dataclasses.dataclass, dataclasses.field),
        (structs.dataclass, structs.field),
    ):

        @deco(frozen=frozen, slots=slots)
        class Point:
            x: int
            y: str = "a"
            tags: list[Any] = fld(default_factory=list)
            hidden: Any = fld(default=None, repr=False, compare=False)

            def total(self) -> str:
                return f"{self.x}{self.y}"

        made.append(Point)
    return made[0], made[1]


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("slots", [False, True])
def test_the_same_as_dataclasses(frozen: bool, slots: bool) -> None:
    std, ours = _pair(frozen, slots)
    for args, kwargs in [
        ((1,), {}),
        ((1, "b"), {}),
        ((2,), {"tags": [1]}),
        ((), {"x": 3, "hidden": 9}),
    ]:
        a, b = std(*args, **kwargs), ours(*args, **kwargs)
        assert repr(a) == repr(b)
        assert a.total() == b.total()
        assert (a.x, a.y, a.tags, a.hidden) == (b.x, b.y, b.tags, b.hidden)
        assert (b == ours(*args, **kwargs)) and (a == std(*args, **kwargs))
        assert b != ours(99) and (b == a) is False  # other class: NotImplemented both ways
        if frozen:
            for cls in (std, ours):  # hidden is not compared: equal, same hash
                c, d = cls(1, "b", (), "h1"), cls(1, "b", (), "h2")
                assert c == d and hash(c) == hash(d)
            with pytest.raises(AttributeError) as caught:
                b.x = 5
            assert isinstance(caught.value, structs.FrozenInstanceError)
            with pytest.raises(AttributeError):
                del b.x
        else:
            b.x = 7
            assert b.x == 7
            with pytest.raises(TypeError):
                hash(b)
        assert hasattr(b, "__dict__") is hasattr(a, "__dict__")
        assert ours.__match_args__ == std.__match_args__
    assert ours(1).tags is not ours(1).tags  # a factory per instance
    with pytest.raises(TypeError):
        ours()
    with pytest.raises(TypeError):
        ours(1, "b", [], None, "extra")


def test_frozen_slotted_instances_pickle() -> None:
    from evflow.core.rules import Location, Retry

    for value in (Retry(5, 1.0, 2.0), Location("f.yaml", 3, 4)):
        assert pickle.loads(pickle.dumps(value)) == value


def test_replace_and_fields() -> None:
    _, ours = _pair(True, True)
    p = ours(1, "z")
    q = structs.replace(p, y="w")
    assert (q.x, q.y, p.y) == (1, "w", "z")
    assert [f.name for f in structs.fields_of(p)] == ["x", "y", "tags", "hidden"]
    with pytest.raises(TypeError):
        structs.replace(p, nope=1)


def test_a_field_without_default_after_one_with_is_an_error() -> None:
    with pytest.raises(TypeError):

        @structs.dataclass
        class Bad:
            a: int = 1
            b: int  # type: ignore[misc]


def test_the_emit_path_does_not_import_dataclasses() -> None:
    """The point of the module: keep it that way (use evflow.core.structs on the emit path)."""
    code = (
        "import sys; from evflow.cli.emit import fast_main\n"
        "import evflow.app, evflow.services.append, evflow.store.sqlite, evflow.rulefiles.loader\n"
        "print('dataclasses' in sys.modules, 'inspect' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_the_dataclasses_functions_take_these_classes() -> None:
    std, ours = _pair(True, True)
    p = ours(1, "z", (2,), "h")
    assert dataclasses.is_dataclass(p)
    assert [f.name for f in dataclasses.fields(p)] == [f.name for f in dataclasses.fields(std(1))]
    assert dataclasses.replace(p, y="w") == ours(1, "w", (2,), "other")
    assert dataclasses.asdict(p) == dataclasses.asdict(std(1, "z", (2,), "h"))


def test_an_emit_with_the_example_rules_from_the_cache_loads_no_heavy_module(
    tmp_path: Path,
) -> None:
    """Issue 16: on a compiled-rules cache hit, emit with three rules on its type (a CEL filter,
    field templates) imports neither CEL nor hashlib, dataclasses, argparse, yaml or croniter."""
    import shutil

    shutil.copytree(REPO / "rules", tmp_path / "rules")
    code = (
        "import sys\nfrom evflow.cli.entry import main\n"
        "try:\n    main(['emit', 'order.placed', '-d', sys.argv[1], '--no-dispatch'])\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('cel_expr_python', 'hashlib', 'dataclasses', 'inspect', 'argparse', 'yaml',"
        " 'croniter', 'typer')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    data = '{"orderId": "1", "userid": "u1", "productId": "p", "orderAmt": 150}'
    first = subprocess.run(
        [sys.executable, "-c", code, data], cwd=tmp_path, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    second = subprocess.run(
        [sys.executable, "-c", code, data], cwd=tmp_path, capture_output=True, text=True
    )
    assert "rule big-order-to-sales" in second.stdout  # the CEL filter matched
    assert second.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(("frozen", "slots"), [(False, False), (True, True), (True, False)])
def test_methods_are_compiled_on_first_use_and_then_called_directly(
    frozen: bool, slots: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decorating compiles nothing (emit imports some thirty classes and calls few of their
    methods); the first call of any generated method compiles them all and puts them on the
    class, and an undecorated subclass's first call puts them on the decorated base."""
    compiled: list[str] = []
    real_exec = exec

    def counting_exec(code: str, env: dict[str, Any]) -> None:
        compiled.append(code)
        real_exec(code, env)

    monkeypatch.setattr(structs, "exec", counting_exec, raising=False)
    _, Point = _pair(frozen, slots)
    assert compiled == []
    assert getattr(Point.__dict__["__init__"], "__evflow_stub__", None) is not None

    class Sub(Point):  # type: ignore[misc, valid-type]
        pass

    p = Sub(1)
    assert len(compiled) == 1
    for name in ("__init__", "__repr__", "__eq__"):
        assert getattr(Point.__dict__[name], "__evflow_stub__", None) is None, name
    assert "__init__" not in Sub.__dict__
    assert repr(p).endswith("Sub(x=1, y='a', tags=[])") and p == Sub(1) and p != Sub(2)
    if frozen:  # replaced too (its fields hold a list: unhashable, as with the standard one)
        assert getattr(Point.__dict__["__hash__"], "__evflow_stub__", None) is None
        with pytest.raises(TypeError, match="unhashable"):
            hash(p)
    assert len(compiled) == 1


def test_a_field_may_be_named_as_the_stubs_own_parameters() -> None:
    @structs.dataclass
    class Odd:
        instance: int
        args: int = 0

    assert Odd(instance=1, args=2) == Odd(1, 2)
