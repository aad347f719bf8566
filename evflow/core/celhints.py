"""Hints for a rule author who wrote CEL as Python or SQL (``and``, ``=``, ``None``): CEL is
C-like, and its parser's own message ("Syntax error: extraneous input") does not say so."""

from __future__ import annotations

from evflow.core.text import LazyPattern

_HABITS = (
    (LazyPattern(r"\band\b"), "use && instead of 'and'"),
    (LazyPattern(r"\bor\b"), "use || instead of 'or'"),
    (LazyPattern(r"\bnot\b"), "use ! instead of 'not'"),
    (LazyPattern(r"(?<![=!<>])=(?!=)"), "use == to compare ('=' assigns nothing in CEL)"),
    (LazyPattern(r"\bNone\b"), "use null instead of None"),
    (LazyPattern(r"\b(True|False)\b"), "use true/false in lower case"),
)
_STRINGS = LazyPattern(r"'[^']*'|\"[^\"]*\"")


def python_habits(source: str) -> str:
    """A hint for Python (or SQL) spelled in CEL, which is C-like; empty when none applies."""
    outside_strings = _STRINGS.sub("''", source)
    hints = [hint for pattern, hint in _HABITS if pattern.search(outside_strings)]
    return f" ({'; '.join(hints)})" if hints else ""
