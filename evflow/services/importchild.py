"""The writing process of a large import on SQLite (started by its :func:`run`).

It is :mod:`evflow.store.bulkwriter`'s writer, which runs the chunks' inserts, and before that
it checks blocks of the input's lines while the importing process checks the others
(:func:`evflow.services.importing._check_shared`), so both cores work on the checking pass too.
It gives each block's answer back as soon as it is done (the importing process then gives it
the next block): ``("ok", kept, size)`` (see :func:`~evflow.services.importing.check_lines`), or
``("invalid", field, problem, where)`` for its first bad line, after which it checks no more
(``("skipped",)``).
"""

from __future__ import annotations

from typing import Any

from evflow.core.lines import parse_line
from evflow.errors import InvalidEvent
from evflow.services.importing import check_lines
from evflow.store.bulkwriter import run as writer_run


class Checks:
    """The blocks this process checks."""

    def __init__(self) -> None:
        self.failed = False

    def check(self, message: tuple[Any, ...]) -> tuple[int, tuple[Any, ...]]:
        """A block's index and answer (see the module doc)."""
        _, index, block, reroute, budget = message  # budget: what the import may still keep
        if self.failed:  # a block before this one has the first bad line this process saw
            return index, ("skipped",)
        try:
            items = [item for where, line in block for item in parse_line(where, line)]
            kept, used = check_lines(items, reroute, budget)
        except InvalidEvent as exc:
            self.failed = True
            return index, ("invalid", exc.field, exc.problem, exc.where)
        except Exception as exc:  # noqa: BLE001 - said in the answer
            self.failed = True
            return index, ("failed", f"{type(exc).__name__}: {exc}")
        return index, ("ok", kept, used)


def run(argv: list[str]) -> int:
    """The writing process's entry (see :class:`evflow.store.bulkwriter.BulkWriter`)."""
    import gc

    gc.disable()  # as in the importing process: many small objects, few kept
    checks = Checks()
    return writer_run(argv, {"check": checks.check})
