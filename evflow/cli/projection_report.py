"""What ``evflow replay`` prints per projection (shared by the typer command and its fast path)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from evflow.cli.output import Output


def report_results(out: Output, results: Iterable[Any]) -> None:
    for r in results:
        if r.error is not None:
            continue
        how = f" (rebuilt: {r.rebuilt})" if r.rebuilt else ""
        out.line(f"{r.name}: at seq {r.position}, {r.applied} event(s) applied{how}")
        if r.skipped:
            out.warn(
                f"evflow: warning: {r.name}: {r.skipped} event(s) skipped (no key);"
                f" first: {'; '.join(r.skip_examples)}"
            )
