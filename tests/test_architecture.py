"""The import contract: the layers of docs/architecture.md, read from the code's own imports.

Every ``import`` in the package is read with ``ast`` (module level, inside functions and under
``TYPE_CHECKING`` alike: a lazy import is still a dependency). The test fails when a layer imports
one above it, when the edges (CLI, bridges) reach past the facade, when two modules import each
other (directly or round a longer cycle), when SQL text appears outside ``evflow/store``, or when
the pure core imports an I/O library.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "evflow"

#: lower layers first; a module may import its own layer and those below it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("evflow.errors",)),
    ("core", ("evflow.core",)),
    ("rulefiles", ("evflow.rulefiles",)),
    ("store", ("evflow.store",)),
    ("services", ("evflow.services",)),
    ("facade", ("evflow.settings", "evflow.app")),
    ("api", ("evflow",)),  # the package itself: the public names
    ("edges", ("evflow.bridge", "evflow.cli", "evflow.serve", "evflow.__main__")),
]
#: what the edges may use besides their own package: the facade, errors, the pure core
EDGE_ALLOWED = ("evflow.app", "evflow.errors", "evflow.core")
#: the CLI may start a bridge (``evflow bridge nats``) and the server (``evflow serve``)
CLI_ALSO = ("evflow.bridge", "evflow.serve")
CORE_FORBIDDEN = (
    "sqlite3", "psycopg", "sqlalchemy", "httpx", "subprocess", "socket", "nats", "typer",
    "rich", "yaml", "evflow.settings",
)  # fmt: skip
SQL = re.compile(
    r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX)|DROP\s+(TABLE|INDEX|SCHEMA)|ALTER\s+TABLE|SAVEPOINT)\b",
    re.IGNORECASE,  # ``select … from`` is SQL too
)
#: the database drivers and SQLAlchemy: imported by the storage layer only
DRIVERS = ("sqlite3", "psycopg", "psycopg2", "pymysql", "MySQLdb", "sqlalchemy")
#: the facade's attributes that are the store itself: the edges call use cases, not these
STORE_ATTRIBUTES = ("store", "_store")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path, text: str | None = None) -> Iterator[tuple[str, int]]:
    """The modules ``name`` imports, with the line; ``from a import b`` counts as ``a.b`` when
    ``b`` is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


def _evflow_imports(name: str) -> list[tuple[str, int]]:
    return [(t, line) for t, line in _imports(name, MODULES[name]) if t.split(".")[0] == "evflow"]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> int:
    """The index of the most specific layer that holds ``module``."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _within(module, (prefix,)) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return best


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer_of(name)


def upward(name: str, imports: list[tuple[str, int]]) -> list[str]:
    """The imports of module ``name`` that reach a layer above its own."""
    mine = layer_of(name)
    return [
        f"{name}:{line} ({LAYERS[mine][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for target, line in imports
        if layer_of(target) > mine
    ]


def test_no_layer_imports_a_layer_above_it() -> None:
    problems = [p for name in MODULES for p in upward(name, _evflow_imports(name))]
    assert not problems, "\n".join(problems)


def test_edges_use_only_the_facade_errors_and_the_pure_core() -> None:
    problems = []
    for name in MODULES:
        if not _within(name, ("evflow.cli", "evflow.bridge", "evflow.serve")):
            continue
        own = ".".join(name.split(".")[:2])
        allowed = EDGE_ALLOWED + (own,) + (CLI_ALSO if own == "evflow.cli" else ())
        for target, line in _evflow_imports(name):
            if not _within(target, allowed):
                problems.append(f"{MODULES[name]}:{line}: {name} imports {target}")
    assert not problems, "\n".join(problems)


def test_services_take_their_dependencies_not_the_facade() -> None:
    problems = [
        f"{MODULES[name]}:{line}: {name} imports {target}"
        for name in MODULES
        if _within(name, ("evflow.services",))
        for target, line in _evflow_imports(name)
        if _within(target, ("evflow.app", "evflow.settings"))
    ]
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    graph = {n: sorted({t for t, _ in _evflow_imports(n) if t in MODULES}) for n in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _strings(path: Path, text: str | None = None) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.value, node.lineno
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            yield text, node.lineno


def test_sql_text_lives_only_in_the_store() -> None:
    problems = [
        f"{path}:{line}: SQL outside evflow/store: {text[:60]!r}"
        for name, path in MODULES.items()
        if not _within(name, ("evflow.store",))
        for text, line in _strings(path)
        if SQL.search(text)
    ]
    assert not problems, "\n".join(problems)


def test_the_core_does_no_io() -> None:
    problems = []
    for name, path in MODULES.items():
        if not _within(name, ("evflow.core",)):
            continue
        for target, line in _imports(name, path):
            if _within(target, CORE_FORBIDDEN):
                problems.append(f"{path}:{line}: {name} imports {target}")
    assert not problems, "\n".join(problems)


def store_reaches(path: Path, text: str | None = None) -> list[int]:
    """The lines where the code reads an attribute that is the store (``flow.store``,
    ``self._store``): an edge doing so uses the storage layer without importing it."""
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in STORE_ATTRIBUTES
    )


def test_edges_do_not_reach_into_the_store_through_the_facade() -> None:
    problems = [
        f"{path}:{line}: {name} reads the facade's store; add a use case to evflow.app instead"
        for name, path in MODULES.items()
        if _within(name, ("evflow.cli", "evflow.bridge", "evflow.serve"))
        for line in store_reaches(path)
    ]
    assert not problems, "\n".join(problems)


def driver_imports(name: str, path: Path, text: str | None = None) -> list[str]:
    return [
        f"{path}:{line}: {name} imports {target}"
        for target, line in _imports(name, path, text)
        if _within(target, DRIVERS)
    ]


def test_database_drivers_are_imported_only_by_the_store() -> None:
    problems = [
        problem
        for name, path in MODULES.items()
        if not _within(name, ("evflow.store",))
        for problem in driver_imports(name, path)
    ]
    assert not problems, "\n".join(problems)


def test_long_modules_say_why() -> None:
    problems = []
    for path in MODULES.values():
        lines = path.read_text(encoding="utf-8").count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > MAX_LINES and "one cohesive" not in doc:
            problems.append(
                f"{path}: {lines} lines; split it, or say in its docstring why it is one cohesive"
                " thing"
            )
    assert not problems, "\n".join(problems)


def test_command_modules_are_imported_statically() -> None:
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        assert "__import__(" not in text, f"{path}: imports by name hide what makes up {name}"


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("evflow.core.rules", "from evflow.store.sql import SqlStore\n"),
        ("evflow.services.replay", "def f():\n    from evflow.app import Evflow\n"),
        ("evflow.store.sql", "from evflow import services\n"),
    ],
)
def test_the_contract_catches_an_upward_import(name: str, source: str) -> None:
    imports = [
        (t, line) for t, line in _imports(name, MODULES[name], source) if t.startswith("evflow")
    ]
    assert upward(name, imports), f"{source!r} in {name} should break the contract"


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("evflow.cli.delivery_cmds", "def f(flow):\n    return flow.store.stats()\n"),
        ("evflow.serve.reading", "def f(self):\n    return self._store\n"),
    ],
)
def test_the_contract_catches_an_edge_reading_the_store(name: str, source: str) -> None:
    assert store_reaches(MODULES[name], source), f"{source!r} in {name} should break the contract"


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("evflow.services.replay", "q = 'delete from snapshots where name = ?'\n"),
        ("evflow.cli.log_cmds", "def f(t):\n    return f'select seq from {t}'\n"),
    ],
)
def test_the_contract_catches_sql_in_any_case(name: str, source: str) -> None:
    assert any(SQL.search(t) for t, _ in _strings(MODULES[name], source)), source


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("evflow.services.tables", "import sqlalchemy as sa\n"),
        ("evflow.app", "def f():\n    import sqlite3\n"),
        ("evflow.cli.projection_cmds", "from psycopg import sql\n"),
    ],
)
def test_the_contract_catches_a_driver_outside_the_store(name: str, source: str) -> None:
    assert driver_imports(name, MODULES[name], source), f"{source!r} in {name} should break it"
