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

from collections.abc import Callable
from typing import Any

from evflow.core.events import Event
from evflow.core.lines import parse_line
from evflow.errors import InvalidEvent
from evflow.services.importing import check_lines
from evflow.store.bulkwriter import run as writer_run


class Checks:
    """The blocks this process checks."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.failed = False
        self.plan: Callable[[Event], Any] | None = None
        self.known: Any = None

    def rules(self, message: tuple[Any, ...]) -> None:
        """The importing process's rules: this process decides what they do to the events it
        checks (``Appender.plan``), as the importing process does."""
        from evflow.core.jsontext import dumps_checked
        from evflow.services.append import Appender
        from evflow.services.importing import known_in
        from evflow.store.sqlite import SqliteStore

        try:
            self.plan = Appender(message[1], encode=dumps_checked).plan
            self.known = known_in(SqliteStore(self.path))  # its own connection, for reading
        except Exception:  # noqa: BLE001 - its events are then routed as they are written
            self.plan = None

    def check(self, message: tuple[Any, ...]) -> tuple[int, tuple[Any, ...]]:
        """A block's index and answer (see the module doc)."""
        _, index, block, reroute, budget = message  # budget: what the import may still keep
        if self.failed:  # a block before this one has the first bad line this process saw
            return index, ("skipped",)
        try:
            items = [item for where, line in block for item in parse_line(where, line)]
            kept, used = check_lines(items, reroute, budget, self.plan, self.known)
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
    checks = Checks(argv[0])
    return writer_run(argv, {"check": (checks.check, "ack"), "rules": (checks.rules, False)})
