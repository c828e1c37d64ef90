"""Header handling shared by both directions: hop-by-hop removal, framing, serialization."""

from __future__ import annotations

from collections.abc import Sequence

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


# Framing is ours to write: whatever the peer sent (or named in Connection) is replaced.
FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# A Connection header may not make us drop these: doing so would change the message's meaning.
_PROTECTED = frozenset({b"content-length", b"host"})
NOT_FORWARDED = HOP_BY_HOP | FRAMING
# Request headers the proxy writes itself on the way up: whatever the client sent is replaced.
PROXY_WRITTEN = frozenset({b"traceparent", b"expect", b"x-mesh-hops"})
# What no forwarded request carries from its client, whichever way it goes.
REQUEST_NOT_FORWARDED = NOT_FORWARDED | PROXY_WRITTEN
# The headers with which the mesh answers for itself (mesh_errors.py). An app's own never pass an inbound
# sidecar: a caller's sidecar reads them as the mesh's word (a 403 "denied" is counted as a denial).
MESH_MARKERS = frozenset({b"x-mesh-error", b"x-mesh-policy"})
INBOUND_RESPONSE_NOT_FORWARDED = NOT_FORWARDED | MESH_MARKERS


def index_and_serialize(
    headers: Headers, indexed: frozenset[bytes], dropped: frozenset[bytes]
) -> tuple[dict[bytes, bytes], list[bytes]]:
    """One pass over a head: the first value of each header in ``indexed`` (by lowercase name; Connection
    headers joined), and the others than ``dropped`` serialized as ``name: value\r\n`` pieces."""
    fields: dict[bytes, bytes] = {}
    parts: list[bytes] = []
    for name, value in headers:
        lower = name.lower()
        if lower in indexed:
            if lower not in fields:
                fields[lower] = value
            elif lower == b"connection":
                fields[lower] += b"," + value
        if lower not in dropped:
            parts += (name, b": ", value, b"\r\n")
    return fields, parts


def header_lines(headers: Headers) -> list[bytes]:
    """Each header as one ``name: value\r\n`` line."""
    return [b"%b: %b\r\n" % header for header in headers]


def connection_names_only(connection: bytes | None, dropped: frozenset[bytes]) -> bool:
    """Whether a Connection header (its joined value) names nothing beyond ``dropped``: then the headers
    filtered by ``dropped`` alone are already end to end."""
    if connection is None:
        return True
    return all(token.strip().lower() in dropped or not token.strip() for token in connection.split(b","))


def end_to_end(
    headers: Headers,
    connection: bytes | None,
    *,
    keep: frozenset[bytes] = frozenset(),
    drop: frozenset[bytes] = frozenset(),
) -> Headers:
    """Headers minus hop-by-hop ones, those ``connection`` (the Connection header's value) names, framing
    headers and ``drop``.

    ``keep`` names hop-by-hop headers to keep (an upgrade's). Content-Length is
    removed too: callers write the framing of what they actually send.
    """
    dropped = NOT_FORWARDED | drop if drop else NOT_FORWARDED
    if connection is not None:
        tokens = {token.strip().lower() for token in connection.split(b",")} - _PROTECTED
        tokens.discard(b"")
        if not tokens <= dropped:
            dropped = dropped | tokens
    if keep:
        dropped = dropped - keep
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def serialize(start_line: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    parts = [start_line]
    for name, value in headers:
        parts.append(name + b": " + value)
    parts.append(b"")
    parts.append(b"")
    return b"\r\n".join(parts)
