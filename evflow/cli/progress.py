"""Progress on stderr for long commands (import, replay): what is being done, how much, how fast,
and how long is left; nothing when stderr is not a terminal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from evflow.cli.output import Output


class Phase:
    """One phase's bar; ``advance``/``update`` are cheap no-ops without a terminal."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar = bar
        self.task = task
        self.started = time.perf_counter()
        self.done = 0

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        fields: dict[str, Any] = {"completed": done, "rate": f"{done / elapsed:,.0f}/s"}
        if total is not None:
            fields["total"] = total
        self.bar.update(self.task, **fields)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def finish(self) -> None:
        self.update(self.done)
        if self.bar is not None:
            self.bar.refresh()


@contextmanager
def progress(out: Output, what: str, total: int | None, unit: str) -> Iterator[Phase]:
    """A bar for one phase: ``what`` (a verb), the count of ``unit`` (of ``total`` when known),
    the rate, and the time left when the total is known."""
    terminal = bool(getattr(out.stderr, "isatty", lambda: False)())
    if not terminal:
        yield Phase(None, None)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    count = (
        f"{{task.completed:,}} / {{task.total:,}} {unit}"
        if total is not None
        else f"{{task.completed:,}} {unit}"
    )
    columns: list[Any] = [TextColumn("{task.description}")]
    if total is not None:
        columns.append(BarColumn())
    columns += [TextColumn(count), TextColumn("{task.fields[rate]}")]
    if total is not None:
        columns += [TimeRemainingColumn(), TextColumn("left")]
    with Progress(*columns, console=out.console(stderr=True), transient=True) as bar:
        phase = Phase(bar, bar.add_task(what, total=total, rate=""))
        yield phase
        phase.finish()
