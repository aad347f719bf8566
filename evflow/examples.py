"""The example rules that ``evflow init`` writes (the SPEC's shop scenario)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def install_example_rules(directory: Path) -> list[Path]:
    """Copy the bundled example rule files into ``directory``; never overwrite a file."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for item in resources.files("evflow.example_rules").iterdir():
        if not item.name.endswith((".yaml", ".yml")):
            continue
        target = directory / item.name
        if target.exists():
            continue
        target.write_text(item.read_text(encoding="utf-8"), encoding="utf-8")
        written.append(target)
    return written
