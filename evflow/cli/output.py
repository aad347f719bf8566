"""Rendering: formats, terminal detection and the rich console, in one place tests replace."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from evflow.core.structs import dataclass, field

FORMATS = ("table", "json", "jsonl")


@dataclass
class Output:
    """Standard streams and terminal facts; commands print through this, never directly."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

    @property
    def no_color(self) -> bool:
        return "NO_COLOR" in os.environ

    def resolve(
        self, fmt: str | None, piped: str = "jsonl", choices: Sequence[str] = FORMATS
    ) -> str:
        """The format asked for, else ``table`` on a terminal and ``piped`` otherwise."""
        from evflow.errors import UsageError

        if fmt is None:
            return "table" if self.is_terminal else piped
        if fmt not in choices:
            raise UsageError(f"--format: expected one of {', '.join(choices)} (got {fmt!r})")
        return fmt

    def console(self, stderr: bool = False) -> Any:
        from rich.console import Console

        return Console(
            file=self.stderr if stderr else self.stdout,
            no_color=self.no_color,
            highlight=False,
            # piped tables are for grep and less: do not squeeze them into 80 columns
            width=None if self.is_terminal else 200,
        )

    def line(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def warn(self, text: str) -> None:
        print(text, file=self.stderr)

    def json(self, value: Any) -> None:
        print(json.dumps(value, ensure_ascii=False, indent=2), file=self.stdout)

    def jsonl(self, values: Iterable[Any]) -> None:
        write = self.stdout.write
        for value in values:
            write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
    ) -> None:
        from rich.table import Table

        table = Table(title=title, show_edge=False, pad_edge=False, box=None, header_style="bold")
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        self.console().print(table)

    def mapping(self, values: Mapping[str, Any]) -> None:
        width = max((len(k) for k in values), default=0)
        for key, value in values.items():
            self.line(f"{key.ljust(width)}  {value}")
