"""The example project that ``evflow init`` writes: the SPEC's shop rules, their tests, and the
mail script their ``run`` action calls (a test keeps these copies equal to the repo's own)."""

from __future__ import annotations

import stat
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

#: bundled file -> where it goes, relative to the project folder (the rules folder's parent)
FILES = {
    "rules/shop.yaml": "{rules}/shop.yaml",
    "rules/tests/shop_test.yaml": "{rules}/tests/shop_test.yaml",
    "scripts/send_mail.sh": "scripts/send_mail.sh",
}


def _bundled(name: str) -> Traversable:
    node = resources.files("evflow") / "example"
    for part in name.split("/"):
        node = node / part
    return node


def install_example(rules_dir: Path) -> list[Path]:
    """Write the example into ``rules_dir`` and its parent; never overwrite a file."""
    rules_dir.mkdir(parents=True, exist_ok=True)
    project = rules_dir.absolute().parent
    written = []
    for name, target in FILES.items():
        path = project / target.format(rules=rules_dir.absolute().name)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_bundled(name).read_text(encoding="utf-8"), encoding="utf-8")
        if path.suffix == ".sh":
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(path)
    return written
