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
