"""Starlette and uvicorn (the ``serve`` extra) belong to ``evflow/serve`` alone, and nothing but
the ``serve`` command starts it: the rest of evflow works without the extra."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "evflow"
SERVER_LIBRARIES = ("starlette", "uvicorn")


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append(node.module)
    return out


def test_server_libraries_are_imported_only_by_serve() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        inside = PACKAGE / "serve" in path.parents
        for name in _imports(path):
            top = name.split(".")[0]
            if top in SERVER_LIBRARIES and not inside:
                problems.append(f"{path.relative_to(REPO)} imports {name}")
            if name.startswith("evflow.serve") and not inside and path.name != "serve_cmds.py":
                problems.append(f"{path.relative_to(REPO)} imports {name}")
    assert not problems, "\n".join(problems)


def test_the_cli_loads_without_importing_the_server() -> None:
    code = (
        "import sys; import evflow.cli.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')"
        " or m.startswith('evflow.serve')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
