"""Exit statuses and the one place where an exception becomes a one-line message."""

from __future__ import annotations

import sys
from enum import IntEnum
from typing import TextIO


class ExitStatus(IntEnum):
    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    INVALID_RULES = 3  # also: failed rule tests
    STORAGE_UNAVAILABLE = 4


def report(exc: BaseException, stderr: TextIO | None = None) -> int:
    """Print ``exc`` as one line (plus a hint) on stderr and return the exit status it means."""
    from evflow.errors import EvflowError, InvalidRules

    err = stderr or sys.stderr
    if isinstance(exc, KeyboardInterrupt):
        print("evflow: interrupted", file=err)
        return 130
    if isinstance(exc, InvalidRules):
        for problem in exc.problems:
            print(str(problem), file=err)
        if exc.hint:
            print(f"hint: {exc.hint}", file=err)
        return int(ExitStatus.INVALID_RULES)
    if isinstance(exc, EvflowError):
        from evflow.core.text import redact_text

        # a message may quote a database URL or a driver's words: never a password
        print(f"evflow: error: {redact_text(exc.message)}", file=err)
        if exc.hint:
            print(f"hint: {exc.hint}", file=err)
        return int(exc.exit_code)
    if _is_storage_error(exc):
        print(f"evflow: error: storage unavailable: {_one_line(exc)}", file=err)
        return int(ExitStatus.STORAGE_UNAVAILABLE)
    print(f"evflow: error: {type(exc).__name__}: {_one_line(exc)}", file=err)
    print("hint: run again with --traceback for details", file=err)
    return int(ExitStatus.ERROR)


def _is_storage_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("sqlite3", "psycopg"))


def _one_line(exc: BaseException) -> str:
    from evflow.core.text import redact_text

    # a driver message may quote the connection string: never print its password
    return redact_text(" ".join(str(exc).split()))
