"""Bearer tokens and their scopes, and where the server may listen.

Tokens are kept only as SHA-256 digests and compared with :func:`hmac.compare_digest`, every one
of them on every request, so neither the comparison nor the number compared says how close a
guess was. No error message ever holds a token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Mapping

from evflow.errors import UsageError

SCOPES = ("ingest", "read")


class Tokens:
    """The accepted tokens, each with its scopes."""

    __slots__ = ("_digests",)

    def __init__(self, table: Mapping[str, frozenset[str]]) -> None:
        self._digests = [(_digest(token), scopes) for token, scopes in table.items()]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def scopes(self, presented: str) -> frozenset[str] | None:
        """The scopes of ``presented``, or None when it is no token of ours."""
        digest = _digest(presented)
        found: frozenset[str] | None = None
        for known, scopes in self._digests:
            if hmac.compare_digest(known, digest):
                found = scopes
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_tokens(text: str, origin: str) -> Tokens:
    """``{"token": ["ingest", "read"], …}`` -> :class:`Tokens`; errors name ``origin`` (the
    variable or file) and never quote the text, which is made of secrets."""
    try:
        table = json.loads(text)
    except ValueError:
        raise UsageError(
            f"{origin}: not JSON", hint='expected {"TOKEN": ["ingest", "read"], ...}'
        ) from None
    if not isinstance(table, dict) or not table:
        raise UsageError(
            f"{origin}: expected a JSON object with at least one token",
            hint='expected {"TOKEN": ["ingest", "read"], ...}',
        )
    out: dict[str, frozenset[str]] = {}
    for number, (token, scopes) in enumerate(table.items(), 1):
        if not token or not token.strip():
            raise UsageError(f"{origin}: token #{number} is empty")
        if not isinstance(scopes, list) or not scopes:
            raise UsageError(
                f"{origin}: token #{number}: scopes must be a non-empty list of {', '.join(SCOPES)}"
            )
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            shown = ", ".join(repr(s) if isinstance(s, str) else "?" for s in unknown)
            raise UsageError(
                f"{origin}: token #{number}: unknown scope {shown} (expected {' or '.join(SCOPES)})"
            )
        out[token] = frozenset(scopes)
    return Tokens(out)


def load_tokens(env: Mapping[str, str], path: str | None) -> Tokens:
    """From ``--tokens FILE`` if given, else ``EVFLOW_TOKENS``; empty when neither is set."""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"--tokens: cannot read {path}: {reason}") from None
        return parse_tokens(text, f"--tokens {path}")
    value = env.get("EVFLOW_TOKENS")
    if value is None:
        return Tokens({})
    return parse_tokens(value, "EVFLOW_TOKENS")


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (127.0.0.0/8, ::1)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
