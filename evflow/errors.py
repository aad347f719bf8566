"""The few exceptions evflow raises; the CLI maps each to an exit status (see ``cli/errors.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class EvflowError(Exception):
    """Base of every error evflow reports to a user as one line."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(EvflowError):
    """Bad command-line input: malformed JSON, an unknown option value, a bad time."""

    exit_code = 2


class BadFilter(UsageError):
    """A filter over a projection's rows (``--where``, ``?where=``) that does not compile."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"--where: {problem}")
        self.problem = problem


class InvalidEvent(EvflowError):
    """An event that does not satisfy the envelope rules (SPEC §1); names the field."""

    exit_code = 2  # bad input (SPEC §5): exit 2, one line naming the field

    def __init__(self, field: str, problem: str, where: str | None = None) -> None:
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{field}: {problem}")
        self.field = field
        self.problem = problem
        self.where = where


class InvalidBatchItem(InvalidEvent):
    """An invalid event in a batch that is recorded whole or not at all; ``index`` is its
    position (from 0)."""

    def __init__(self, index: int, cause: InvalidEvent) -> None:
        super().__init__(cause.field, cause.problem, f"event {index}")
        self.index = index


class Problem:
    """One finding of rule validation, located in a file.

    A frozen value, written out rather than made by ``dataclasses`` (whose import costs ``emit``
    ~9 ms: issue 16); it behaves as ``@dataclass(frozen=True, slots=True)`` would.
    """

    __slots__ = ("column", "file", "line", "message", "rule", "severity")
    __match_args__ = ("file", "line", "column", "message", "rule", "severity")

    file: str
    line: int
    column: int
    message: str
    rule: str | None
    severity: str

    def __init__(
        self,
        file: str,
        line: int,
        column: int,
        message: str,
        rule: str | None = None,
        severity: str = "error",
    ) -> None:
        for name, value in zip(
            self.__match_args__, (file, line, column, message, rule, severity), strict=True
        ):
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple[Any, ...]:
        return (self.file, self.line, self.column, self.message, self.rule, self.severity)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Problem)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"Problem(file={self.file!r}, line={self.line!r}, column={self.column!r}, "
            f"message={self.message!r}, rule={self.rule!r}, severity={self.severity!r})"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field '{name}'")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}'")

    def __getstate__(self) -> tuple[Any, ...]:
        return self._fields()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__match_args__, state, strict=True):
            object.__setattr__(self, name, value)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"


class InvalidRules(EvflowError):
    """Rule files that fail validation; carries every problem found in one run."""

    exit_code = 3

    def __init__(self, problems: list[Problem]) -> None:
        errors = [p for p in problems if p.severity == "error"]
        first = str(errors[0]) if errors else "invalid rules"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more, hint="run 'evflow rules validate' to see every problem")
        self.problems = problems


class ChainTooDeep(EvflowError):
    """A chain of emit actions went deeper than the limit; nothing was recorded."""

    exit_code = 1


class NotFound(EvflowError):
    """An event, projection, rule or delivery that does not exist."""

    exit_code = 1


class StorageUnavailable(EvflowError):
    """The database cannot be opened or reached."""

    exit_code = 4


class NoDatabase(StorageUnavailable):
    """A command that only reads found no database (it never creates one)."""

    def __init__(self, where: str) -> None:
        super().__init__(f"no evflow database at {where}; run `evflow init`, or pass --db")


class MissingExtra(EvflowError):
    """An optional dependency is not installed; names the extra that brings it."""

    exit_code = 1

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed",
            hint=f"install it with: pip install 'evflow[{extra}]'",
        )


class UnknownProjection(NotFound):
    """A projection name that no rule file defines."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) if known else "none are defined"
        super().__init__(
            f"unknown projection '{name}' (known: {listed})",
            hint="projections are defined under 'projections:' in the rule files",
        )
        self.name = name
        self.known = tuple(known)


class ReplayFailed(EvflowError):
    """A handler failed during a replay; the other projections were brought up to date."""

    def __init__(self, results: list[Any]) -> None:
        errors = [r.error for r in results if r.error is not None]
        first = errors[0]
        more = f" (and {len(errors) - 1} more projection(s) failed)" if len(errors) > 1 else ""
        super().__init__(first.message + more, hint=first.hint)
        self.results = results
        self.errors = errors


class TableUnavailable(StorageUnavailable):
    """The database of a projection's SQL table cannot be reached; the rest of a replay went on."""


class TableFailed(EvflowError):
    """A projection's SQL table could not be kept (a foreign table in its way, a bad query)."""


class TablesNotKept(EvflowError):
    """A replay kept its snapshots but not every SQL table; exit 4 when all were unreachable."""

    def __init__(self, errors: list[EvflowError], results: list[Any]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more table(s) not kept)" if len(errors) > 1 else ""
        super().__init__(first.message + more, hint=first.hint)
        self.errors = errors
        self.results = results
        down = all(isinstance(e, StorageUnavailable) for e in errors)
        self.exit_code = StorageUnavailable.exit_code if down else first.exit_code
