"""HTTP/1.1 message heads as httptools (llhttp in strict mode) parses them, and their framing.

The proxy builds a ``RequestHead`` per request inside its protocols' parser
callbacks; this module is on the request path and is compiled (``proxyagent.compile``).
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools

from proxyagent.http.headers import REQUEST_NOT_FORWARDED, Headers, index_and_serialize
from proxyagent.mesh_errors import MeshError, MeshErrorCode


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: str
    headers: Headers
    keep_alive: bool
    upgrade: bool
    chunked: bool
    content_length: int | None
    # First values of the headers the proxy reads itself (REQUEST_FIELDS), by lowercase name.
    fields: dict[bytes, bytes]
    # The headers minus REQUEST_NOT_FORWARDED, serialized ("name: value\r\n" each): what goes up
    # unless the Connection header or the route drops more.
    forwarded: bytes

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


# Request headers the proxy reads, indexed in one pass over the head.
REQUEST_FIELDS = frozenset(
    {
        b"host",
        b"connection",
        b"content-length",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"traceparent",
        b"x-mesh-hops",
        b"x-mesh-source-workload",
    }
)
RESPONSE_FIELDS = frozenset({b"connection", b"content-length", b"transfer-encoding"})


def request_head(parser: httptools.HttpRequestParser, target: bytes, headers: Headers) -> RequestHead:
    """The head the parser has just completed; raises ``MeshError`` for framing we refuse."""
    fields, parts = index_and_serialize(headers, REQUEST_FIELDS, REQUEST_NOT_FORWARDED)
    chunked, length = framing(fields)
    return RequestHead(
        method=parser.get_method(),
        target=target,
        version=parser.get_http_version(),
        headers=headers,
        keep_alive=parser.should_keep_alive(),
        upgrade=parser.should_upgrade(),
        chunked=chunked,
        content_length=length,
        fields=fields,
        forwarded=b"".join(parts),
    )


def framing(fields: dict[bytes, bytes]) -> tuple[bool, int | None]:
    """(chunked, content length) of a message from its indexed fields; raises ``MeshError`` for a
    transfer coding we cannot relay."""
    encoding = fields.get(b"transfer-encoding")
    if encoding is not None:
        if encoding.strip().lower() != b"chunked":
            # We re-frame bodies, so a transfer coding other than chunked would be lost on the way.
            raise MeshError(MeshErrorCode.BAD_REQUEST, "only 'Transfer-Encoding: chunked' is supported")
        return True, None
    length = fields.get(b"content-length")
    return False, int(length) if length is not None else None
