"""Header handling shared by both directions: hop-by-hop removal, framing, serialization."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Headers = list[tuple[bytes, bytes]]

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def connection_tokens(headers: Headers) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return tokens


# Framing is ours to write: whatever the peer sent (or named in Connection) is replaced.
FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# A Connection header may not make us drop these: doing so would change the message's meaning.
_PROTECTED = frozenset({b"content-length", b"host"})


def end_to_end(headers: Headers, *, keep: Iterable[bytes] = ()) -> Headers:
    """Headers minus hop-by-hop ones, those the Connection header names, and framing headers.

    ``keep`` names hop-by-hop headers to keep (an upgrade's). Content-Length is
    removed too: callers write the framing of what they actually send.
    """
    drop = (HOP_BY_HOP | (connection_tokens(headers) - _PROTECTED) | FRAMING) - set(keep)
    return [(name, value) for name, value in headers if name.lower() not in drop]


def get(headers: Headers, name: bytes) -> bytes | None:
    """The first value of ``name`` (lowercase), or ``None``."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def serialize(start_line: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    parts = [start_line]
    for name, value in headers:
        parts.append(name + b": " + value)
    parts.append(b"")
    parts.append(b"")
    return b"\r\n".join(parts)
