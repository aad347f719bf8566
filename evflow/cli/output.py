"""Rendering: formats, terminal detection, the pager and streamed tables, in one place tests
replace. Kept free of typer and rich: ``emit``'s fast path imports it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from itertools import chain, islice
from typing import Any, TextIO

from evflow.core.structs import dataclass, field

FORMATS = ("table", "json", "jsonl")

#: rows a table is laid out from: later rows are printed in the columns the first page chose,
#: so a listing's memory does not grow with the log
FIRST_PAGE = 200
#: the narrowest a cut (non-identifying) column gets before columns are dropped
MIN_CUT = 8

BOLD, RESET = "\x1b[1m", "\x1b[0m"
COLOURS = {"green": "\x1b[32m", "red": "\x1b[31m", "yellow": "\x1b[33m", "dim": "\x1b[2m"}
#: the colour of each status word (deliveries, rule tests, schedules, timers)
STATUS_COLOURS = {
    "done": "green", "PASS": "green", "active": "green", "fired": "green",
    "dead": "red", "failed": "red", "FAIL": "red", "expired": "dim", "cancelled": "dim",
    "pending": "yellow", "running": "yellow",
}  # fmt: skip


@dataclass(slots=True)
class Column:
    """A table column; ``key`` columns identify the row (seq, type, rule, status) and are never
    cut; ``status`` columns are coloured by value."""

    name: str
    key: bool = False
    status: bool = False


def columns(names: Sequence[str | Column]) -> list[Column]:
    return [c if isinstance(c, Column) else Column(c) for c in names]


@dataclass
class Output:
    """Standard streams and terminal facts; commands print through this, never directly."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    no_pager: bool = False
    _terminal: bool | None = None

    @property
    def is_terminal(self) -> bool:
        if self._terminal is None:
            self._terminal = bool(getattr(self.stdout, "isatty", lambda: False)())
        return self._terminal

    @property
    def no_color(self) -> bool:
        return "NO_COLOR" in os.environ

    @property
    def color(self) -> bool:
        return self.is_terminal and not self.no_color and os.environ.get("TERM") != "dumb"

    @property
    def width(self) -> int | None:
        """The terminal's width in columns; None when output is not a terminal (no limit)."""
        if not self.is_terminal:
            return None
        import shutil  # not at the top: emit's fast path never asks (shutil imports bz2, lzma)

        return shutil.get_terminal_size((80, 24)).columns

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

    # -- the pager ----------------------------------------------------------------------------

    def pager_command(self) -> str | None:
        """``$EVFLOW_PAGER``, else ``$PAGER``, else ``less -FRX`` (as git does); None for none."""
        if self.no_pager or not self.is_terminal:
            return None
        command = os.environ.get("EVFLOW_PAGER", os.environ.get("PAGER"))
        if command is None:
            import shutil

            return "less -FRX" if shutil.which("less") else None
        return None if command.strip() in ("", "cat") else command

    @contextmanager
    def paged(self) -> Iterator[None]:
        """Send what is printed inside through the pager, on a terminal; quitting the pager
        early is not an error."""
        command = self.pager_command()
        if command is None:
            yield
            return
        import io
        import subprocess

        env = dict(os.environ)
        env.setdefault("LESS", "FRX")
        self.stdout.flush()
        try:
            proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
        except OSError:
            yield
            return
        assert proc.stdin is not None
        saved = self.stdout
        self.stdout = io.TextIOWrapper(proc.stdin, encoding="utf-8", errors="replace")
        try:
            yield
        except (BrokenPipeError, KeyboardInterrupt):
            pass  # the reader quit the pager (or pressed Ctrl-C in it)
        finally:
            with suppress(BrokenPipeError, OSError):
                self.stdout.close()
            self.stdout = saved
            while True:
                try:
                    proc.wait()
                    break
                except KeyboardInterrupt:
                    continue  # Ctrl-C belongs to the pager while it runs

    # -- plain output -------------------------------------------------------------------------

    def console(self, stderr: bool = False) -> Any:
        """A rich console (for progress bars on stderr)."""
        from rich.console import Console

        stream = self.stderr if stderr else self.stdout
        return Console(file=stream, no_color=self.no_color, highlight=False)

    def line(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def warn(self, text: str) -> None:
        print(text, file=self.stderr)

    def json(self, value: Any) -> None:
        print(json.dumps(value, ensure_ascii=False, indent=2), file=self.stdout)

    def json_stream(self, values: Iterable[Any]) -> None:
        """A JSON array written item by item (the same text as :meth:`json` of the list)."""
        write = self.stdout.write
        first = True
        for value in values:
            text = json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n  ")
            write(("[\n  " if first else ",\n  ") + text)
            first = False
        write("[]\n" if first else "\n]\n")

    def jsonl(self, values: Iterable[Any]) -> None:
        write = self.stdout.write
        for value in values:
            write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")

    def paint(self, text: str, colour: str | None) -> str:
        if not colour or not self.color:
            return text
        code = BOLD if colour == "bold" else COLOURS.get(colour, "")
        return f"{code}{text}{RESET}" if code else text

    def status(self, word: str) -> str:
        """A status word, coloured when colour is on."""
        return self.paint(word, STATUS_COLOURS.get(word))

    # -- tables -------------------------------------------------------------------------------

    def table(
        self,
        names: Sequence[str | Column],
        rows: Iterable[Sequence[Any]],
        title: str | None = None,
    ) -> None:
        """Rows under a header, laid out from the first page and streamed; on a terminal too
        narrow for the identifying columns, one record per block."""
        cols = columns(names)
        it = iter(rows)
        page = [[_text(v) for v in row] for row in islice(it, FIRST_PAGE)]
        if not page:
            return  # nothing to show: no header either (as git log prints nothing)
        rest = ([_text(v) for v in row] for row in it)
        widths = [
            max([len(c.name), *(len(r[i]) for r in page if i < len(r))]) for i, c in enumerate(cols)
        ]
        limit = self.width
        shown = list(range(len(cols)))
        if limit is not None:
            fitted = _fit(cols, widths, limit)
            if fitted is None:
                self._blocks(cols, chain(page, rest), limit)
                return
            widths, shown = fitted
        write = self.stdout.write
        if title:
            write(self.paint(title, "bold") + "\n")
        header = [(cols[i].name, widths[i]) for i in shown]
        write(self.paint(_join([_pad(n, w) for n, w in header]), "bold") + "\n")
        last = shown[-1] if shown else -1
        for row in chain(page, rest):
            cells = []
            for i in shown:
                value = row[i] if i < len(row) else ""
                if not cols[i].key:
                    value = _cut(value, widths[i])
                padded = value if i == last else _pad(value, widths[i])
                if cols[i].status:
                    padded = self.status(value) + padded[len(value) :]
                cells.append(padded)
            write(_join(cells).rstrip() + "\n")

    def _blocks(self, cols: list[Column], rows: Iterable[list[str]], limit: int) -> None:
        label = max(len(c.name) for c in cols)
        room = max(8, limit - label - 2)
        write = self.stdout.write
        first = True
        for row in rows:
            if not first:
                write("\n")
            first = False
            for i, c in enumerate(cols):
                value = row[i] if i < len(row) else ""
                if not value:
                    continue
                # an identifying value is never cut (the terminal wraps it); others are
                piece = value if c.key else _cut(value, room)
                text = self.status(piece) if c.status else piece
                write(f"{self.paint(c.name.ljust(label), 'bold')}  {text}".rstrip() + "\n")

    def mapping(self, values: Mapping[str, Any]) -> None:
        width = max((len(k) for k in values), default=0)
        for key, value in values.items():
            self.line(f"{key.ljust(width)}  {value}")


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\n", " ") if "\n" in text else text


def _pad(text: str, width: int) -> str:
    return text + " " * (width - len(text)) if len(text) < width else text


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _join(cells: list[str]) -> str:
    return "  ".join(cells)


def _fit(cols: list[Column], widths: list[int], limit: int) -> tuple[list[int], list[int]] | None:
    """Column widths and the columns shown so that a row fits ``limit``: cut columns shrink
    (the widest first), then drop from the right; None when the identifying ones alone do not
    fit."""
    widths = list(widths)
    shown = list(range(len(cols)))

    def total() -> int:
        return sum(widths[i] for i in shown) + 2 * (len(shown) - 1)

    floor = [
        w if c.key else min(w, max(MIN_CUT, len(c.name))) for c, w in zip(cols, widths, strict=True)
    ]
    while total() > limit:
        cuttable = [i for i in shown if widths[i] > floor[i]]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i])
        widths[widest] -= min(widths[widest] - floor[widest], total() - limit)
    while total() > limit:
        droppable = [i for i in shown if not cols[i].key]
        if not droppable:
            return None
        shown.remove(droppable[-1])
    return widths, shown
