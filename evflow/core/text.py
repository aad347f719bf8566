"""Text helpers shared by every layer: values as text, passwords kept out of what is printed,
and GitHub workflow-command escaping."""

from __future__ import annotations

import json
import re
from typing import Any


def as_text(value: Any) -> str:
    """A value inside a larger string, an argv element, env value or header: strings as they
    are, null as nothing, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def split_credentials(url: str) -> tuple[str, str, str, str] | None:
    """``(scheme, user, password as written, the rest after '@')`` of a URL with a password.

    The user-info ends at the *last* ``@`` (a password may hold ``@``, ``/``, ``#``, ``?``, ``%``
    or spaces, written raw or percent-encoded); None when the URL names no password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    # the first '@' after which no '@' comes before the host ends (first '/') nor before the
    # query (first '?'): a '@' in a password is followed by another; one in a query is not
    at = -1
    while (at := rest.find("@", at + 1)) >= 0:
        after = rest[at + 1 :]
        if "@" not in after.split("/", 1)[0] and "@" not in after.split("?", 1)[0]:
            break
    if at < 0:
        return None
    creds, host = rest[:at], rest[at + 1 :]
    user, colon, password = creds.partition(":")
    if not colon or "/" in user or "?" in user or "#" in user:
        return None
    if re.match(r"\d{1,5}[/?#]", password):
        return None  # "host:8080/path?q=a@b": a port and a path, the '@' in the query
    return scheme, user, password, host


def password_of(url: str) -> str | None:
    """The password of a URL, decoded when it is validly percent-encoded, else as written."""
    found = split_credentials(url)
    if found is None or not found[2]:
        return None
    written = found[2]
    if "%" in written and not re.search(r"%(?![0-9A-Fa-f]{2})", written):
        from urllib.parse import unquote

        return unquote(written)
    return written


def redact(url: str) -> str:
    """A URL with the password of its user-info replaced by ``***`` (never print a password)."""
    found = split_credentials(url)
    if found is None:
        return url
    scheme, user, _, host = found
    return f"{scheme}://{user}:***@{host}"


# Passwords of the database URLs this process opened: a driver may quote one in its message in
# any form (decoded, encoded, cut at a space), so every message printed goes through these.
_SECRETS: set[str] = set()


def remember_secret(url: str) -> None:
    """Note the password of ``url`` (every form of it) so that :func:`redact_text` hides it."""
    found = split_credentials(url)
    if found is None or not found[2]:
        return
    from urllib.parse import quote, unquote

    written = found[2]
    for form in (written, password_of(url) or "", unquote(written), quote(written, safe="")):
        if len(form) >= 3:
            _SECRETS.add(form)
    # a message may break the URL at a space or a quote: hide each longer piece too
    for piece in re.split(r"[\s'\"#/?@:]+", written):
        if len(piece) >= 3:
            _SECRETS.add(piece)


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it, and every remembered password, replaced
    (for messages from drivers and errors)."""
    out = " ".join(redact(word) if "://" in word else word for word in text.split(" "))
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in out:
            out = out.replace(secret, "***")
    return out


def github_escape(text: str) -> str:
    """A GitHub Actions workflow-command message: ``%``, CR and LF escaped (``escapeData`` of
    GitHub's toolkit, @actions/core)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class LazyPattern:
    """A regular expression compiled on first use: modules on ``emit``'s import path compile at
    import only the patterns every emit needs (issue 16).

    The first use of a method (``fullmatch``, ``search``…) compiles the pattern and keeps that
    method of the compiled pattern on the instance, so every later call goes straight to it:
    an import checks several patterns per event, and going through ``re.compile``'s cache on
    every call cost ~2 µs each (issue 16)."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._pattern = pattern
        self._flags = flags

    def __getattr__(self, name: str) -> Any:  # only for what the instance does not hold yet
        if name.startswith("_"):
            raise AttributeError(name)
        import re

        value = getattr(re.compile(self._pattern, self._flags), name)
        setattr(self, name, value)
        return value


def sha1(data: bytes = b"") -> Any:
    """``hashlib.sha1``, from CPython's own small module when it has one: importing ``hashlib``
    loads OpenSSL, which costs ``emit`` several milliseconds (issue 16)."""
    return (_SHA1 or _load_sha1())(data)


_SHA1: Any = None  # the constructor, found once (an import statement per call costs ~2 µs)


def _load_sha1() -> Any:
    global _SHA1
    try:
        from _sha1 import sha1 as made
    except ImportError:  # another interpreter: the same digest from hashlib
        from hashlib import sha1 as made
    _SHA1 = made
    return made


def sha256(data: bytes = b"") -> Any:
    """``hashlib.sha256``, from CPython's own small module when it has one (see :func:`sha1`)."""
    try:
        from _sha256 import sha256 as made
    except ImportError:
        from hashlib import sha256 as made
    return made(data)


def github_property(text: str) -> str:
    """A workflow-command property value (``file=``, ``title=``): as a message, and ``:`` and
    ``,`` too, which would end it (``escapeProperty`` of GitHub's toolkit)."""
    return github_escape(text).replace(":", "%3A").replace(",", "%2C")
