"""The writing process of a large import on SQLite (started by its :func:`run`).

It is :mod:`evflow.store.bulkwriter`'s writer, which runs the chunks' inserts, and before that
it checks every other block of the input's lines while the importing process checks the others
(:func:`evflow.services.importing._check_shared`), so both cores work on the checking pass too.
A block's answer is ``("ok", kept)`` (see :func:`~evflow.services.importing.check_lines`), or
``("invalid", field, problem, where)`` for its first bad line, after which it checks no more.
"""

from __future__ import annotations

from typing import Any

from evflow.core.lines import parse_line
from evflow.errors import InvalidEvent
from evflow.services.importing import KEEP_CHECKED, check_lines
from evflow.store.bulkwriter import run as writer_run


class Checks:
    """The blocks this process checks, and their answers until asked for them."""

    def __init__(self) -> None:
        self.answers: dict[int, tuple[Any, ...]] = {}
        self.budget = KEEP_CHECKED // 2  # the importing process keeps the other half
        self.failed = False

    def check(self, message: tuple[Any, ...]) -> None:
        _, index, block, reroute = message
        if self.failed:
            return  # a block before this one has the first bad line this process saw
        try:
            items = [item for where, line in block for item in parse_line(where, line)]
            kept, used = check_lines(items, reroute, self.budget)
        except InvalidEvent as exc:
            self.failed = True
            self.answers[index] = ("invalid", exc.field, exc.problem, exc.where)
            return
        except Exception as exc:  # noqa: BLE001 - said in the answer: this op sends none
            self.failed = True
            self.answers[index] = ("failed", f"{type(exc).__name__}: {exc}")
            return
        self.budget = self.budget - used if kept is not None else -1
        self.answers[index] = ("ok", kept)

    def checked(self, _: tuple[Any, ...]) -> dict[int, tuple[Any, ...]]:
        answers, self.answers = self.answers, {}
        return answers


def run(argv: list[str]) -> int:
    """The writing process's entry (see :class:`evflow.store.bulkwriter.BulkWriter`)."""
    checks = Checks()
    return writer_run(argv, {"check": (checks.check, False), "checked": (checks.checked, True)})
