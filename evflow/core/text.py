"""Text helpers shared by every layer: values as text, passwords kept out of what is printed,
and GitHub workflow-command escaping."""

from __future__ import annotations

import json
from typing import Any


def as_text(value: Any) -> str:
    """A value inside a larger string, an argv element, env value or header: strings as they
    are, null as nothing, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def redact(url: str) -> str:
    """A URL with the password of its user-info replaced by ``***`` (never print a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" not in authority:
        return url
    creds, _, host = authority.rpartition("@")
    if ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{tail}"


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced (for messages from drivers)."""
    return " ".join(redact(word) if "://" in word else word for word in text.split(" "))


def github_escape(text: str) -> str:
    """A GitHub Actions workflow-command message: ``%``, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class LazyPattern:
    """A regular expression compiled on first use (``re`` caches it from then on): modules on
    ``emit``'s import path compile at import only the patterns every emit needs (issue 16)."""

    __slots__ = ("_flags", "_pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._pattern = pattern
        self._flags = flags

    def __getattr__(self, name: str) -> Any:
        import re

        return getattr(re.compile(self._pattern, self._flags), name)


def sha1(data: bytes = b"") -> Any:
    """``hashlib.sha1``, from CPython's own small module when it has one: importing ``hashlib``
    loads OpenSSL, which costs ``emit`` several milliseconds (issue 16)."""
    try:
        from _sha1 import sha1 as made
    except ImportError:  # another interpreter: the same digest from hashlib
        from hashlib import sha1 as made
    return made(data)


def sha256(data: bytes = b"") -> Any:
    """``hashlib.sha256``, from CPython's own small module when it has one (see :func:`sha1`)."""
    try:
        from _sha256 import sha256 as made
    except ImportError:
        from hashlib import sha256 as made
    return made(data)
