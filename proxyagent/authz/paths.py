"""Request paths normalized once, so the path authorized is exactly the path forwarded.

Authorization bypasses live in the gap between how a proxy reads a path and how the
application does: ``/public/../admin``, ``/public/%2e%2e/admin``, ``//admin``,
``/admin;x=y``, ``/ADMIN``, ``/admin%2F``. The agent closes the gap by normalizing
the path before matching and forwarding the normalized form, never the original.

The rules, in order:

1. The target must be origin-form (``/...``); a fragment (``#...``) is dropped (clients
   must not send one; if one arrives it is not part of the path).
2. The query is split off at the first ``?``; it is not matched, and is forwarded as
   received once checked for control characters.
3. Raw NUL, control characters (0x00-0x1F, 0x7F), spaces and non-ASCII bytes are refused.
4. Percent-escapes are checked (two hex digits) and upper-cased. Escapes of unreserved
   characters (RFC 3986: ``A-Z a-z 0-9 - . _ ~``) are decoded, so ``%2e`` is ``.`` and
   ``%41`` is ``A``. Escaped control characters (``%00``-``%1F``, ``%7F``) are refused.
5. ``%2F`` and ``%5C`` (an escaped ``/`` or ``\\``) are refused in the default ``strict``
   mode: servers disagree on whether they separate segments. ``keep`` forwards them
   escaped and matches them as opaque characters; ``decode`` turns them into ``/``.
6. A raw backslash is refused in ``strict`` mode; ``decode`` treats it as ``/`` (as
   Windows servers do); ``keep`` leaves it as a character.
7. Path parameters (``;...`` up to the next ``/``) are removed from every segment in
   ``strict`` mode (Java servers ignore them when routing, so ``/admin;x=y`` *is*
   ``/admin``); ``keep`` leaves them.
8. Empty segments are merged (``//admin`` is ``/admin``), then ``.`` and ``..`` are
   resolved (RFC 3986 section 5.2.4); ``..`` never climbs above the root.
9. Case is kept: paths are case-sensitive (``/ADMIN`` is not ``/admin``), as methods are
   (RFC 9110); only the host is matched case-insensitively, without a trailing dot.

Methods are matched case-sensitively, and a method with lowercase letters is refused
outright (``check_method``): many servers upper-case the method before routing, so a
``delete`` that slipped past a rule about ``DELETE`` would still delete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# Characters allowed raw in a path or query (RFC 3986 pchar plus "/" and "?"), beyond escapes.
_ALLOWED_RAW = re.compile(r"\A[A-Za-z0-9\-._~!$&'()*+,;=:@/%?\\]*\Z")


class SlashMode(StrEnum):
    STRICT = "strict"
    KEEP = "keep"
    DECODE = "decode"


class PathRejected(ValueError):  # noqa: N818 - the agent's answer is literally "rejected"
    """The target cannot be normalized safely; the message says why (sent as a 400 detail)."""


@dataclass(frozen=True, slots=True)
class NormalizedTarget:
    path: str
    query: str | None

    @property
    def target(self) -> str:
        """What is forwarded: the normalized path, and the query as received."""
        return self.path if self.query is None else f"{self.path}?{self.query}"


def _decode_escapes(path: str, mode: SlashMode) -> str:
    out: list[str] = []
    index = 0
    while index < len(path):
        char = path[index]
        if char != "%":
            out.append(char)
            index += 1
            continue
        pair = path[index + 1 : index + 3]
        if len(pair) != 2 or not set(pair) <= _HEX:
            raise PathRejected(f"malformed percent-escape at position {index}")
        value = int(pair, 16)
        if value < 0x20 or value == 0x7F:
            raise PathRejected("an escaped control character in the path")
        decoded = chr(value)
        if decoded in "/\\":
            if mode is SlashMode.STRICT:
                raise PathRejected("an escaped '/' or '\\' in the path (%2F, %5C)")
            out.append("/" if mode is SlashMode.DECODE else f"%{pair.upper()}")
        elif decoded in _UNRESERVED:
            out.append(decoded)
        else:
            out.append(f"%{pair.upper()}")
        index += 3
    return "".join(out)


def _remove_dot_segments(segments: list[str]) -> list[str]:
    kept: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if kept:
                kept.pop()
            continue
        kept.append(segment)
    return kept


def normalize_target(target: str, mode: SlashMode = SlashMode.STRICT) -> NormalizedTarget:
    """The normalized form of an origin-form request target, or ``PathRejected``."""
    if not target.startswith("/"):
        raise PathRejected("the request target must be a path starting with '/'")
    target = target.split("#", 1)[0]
    path, separator, query = target.partition("?")
    if not _ALLOWED_RAW.match(target):
        raise PathRejected("NUL, control characters, spaces or non-ASCII bytes in the request target")
    if query and any(ord(char) < 0x20 or ord(char) == 0x7F for char in query):
        raise PathRejected("control characters in the query")
    if "\\" in path:
        if mode is SlashMode.STRICT:
            raise PathRejected("a backslash in the path")
        if mode is SlashMode.DECODE:
            path = path.replace("\\", "/")
    path = _decode_escapes(path, mode)
    segments = path.split("/")[1:]
    if mode is SlashMode.STRICT:
        segments = [segment.split(";", 1)[0] for segment in segments]
    trailing_slash = path.endswith("/") or (bool(segments) and segments[-1] in (".", ".."))
    resolved = _remove_dot_segments([segment for segment in segments if segment != ""])
    normalized = "/" + "/".join(resolved)
    if trailing_slash and resolved:
        normalized += "/"
    return NormalizedTarget(normalized, query if separator else None)


_METHOD = re.compile(r"\A[!#$%&'*+\-.^_`|~0-9A-Z]+\Z")


def check_method(method: str) -> str:
    """``method`` if it is an RFC 9110 token without lowercase letters, else ``PathRejected``."""
    if not _METHOD.match(method):
        raise PathRejected(f"method {method!r} is not an upper-case token")
    return method


def normalize_host(host: str) -> str:
    """A Host header for matching: lowercase, without port or trailing dot."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
    return name.lower().rstrip(".")
