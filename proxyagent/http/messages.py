"""HTTP/1.1 message heads as httptools (llhttp in strict mode) parses them.

``RequestReader`` reads requests off a stream for the low-volume admin
endpoint; the proxy itself parses in its protocols' ``data_received``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum, auto

import httptools

from proxyagent.http.headers import REQUEST_NOT_FORWARDED, Headers, index_and_serialize
from proxyagent.mesh_errors import MeshError, MeshErrorCode

READ_SIZE = 65536


class _Event(Enum):
    HEAD = auto()
    BODY = auto()
    END = auto()


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


class ClientGone(Exception):  # noqa: N818 - a condition, not a failure of ours
    """The client closed its connection in the middle of a message."""


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


class _Callbacks:
    """Collects parser callbacks as events. The head is built inside ``on_headers_complete``,
    while the parser still describes that message (a later message in the same read would
    otherwise overwrite its headers)."""

    def __init__(self, build_head: Callable[[_Callbacks], object]) -> None:
        self.events: deque[tuple[_Event, object]] = deque()
        self._build_head = build_head
        self.url = bytearray()
        self.headers: Headers = []

    def on_message_begin(self) -> None:
        self.url = bytearray()
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.events.append((_Event.HEAD, self._build_head(self)))

    def on_body(self, body: bytes) -> None:
        self.events.append((_Event.BODY, body))

    def on_message_complete(self) -> None:
        self.events.append((_Event.END, None))


class RequestReader:
    """Requests from one downstream connection, in order (pipelined ones included)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._cb = _Callbacks(self._build_head)
        self._parser = httptools.HttpRequestParser(self._cb)
        self.upgraded_leftover: bytes | None = None
        # True from a head with a body until that body's end has been read off the connection.
        self.body_pending = False

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded_leftover = data[upgrade.args[0] :]
        except httptools.HttpParserError as exc:
            raise MeshError(MeshErrorCode.BAD_REQUEST, f"malformed request: {exc}") from None

    def _build_head(self, cb: _Callbacks) -> RequestHead | MeshError:
        try:
            return request_head(self._parser, bytes(cb.url), cb.headers)
        except MeshError as exc:
            return exc

    async def _fill(self) -> bool:
        if self.upgraded_leftover is not None:
            return False
        data = await self._reader.read(READ_SIZE)
        if not data:
            return False
        self._feed(data)
        return True

    async def next_head(self) -> RequestHead | None:
        """The next request's head, or ``None`` when the client closed between requests."""
        events = self._cb.events
        while True:
            while events:
                kind, payload = events.popleft()
                if kind is _Event.HEAD:
                    if isinstance(payload, MeshError):
                        raise payload
                    assert isinstance(payload, RequestHead)
                    self.body_pending = payload.has_body
                    return payload
            if not await self._fill():
                return None

    async def body(self, head: RequestHead) -> AsyncIterator[bytes]:
        """The current request's body chunks; ends at the end of the message."""
        events = self._cb.events
        if head.upgrade and self.upgraded_leftover is not None:
            return
        while True:
            while events:
                kind, payload = events.popleft()
                if kind is _Event.BODY:
                    assert isinstance(payload, bytes)
                    yield payload
                elif kind is _Event.END:
                    self.body_pending = False
                    return
                else:
                    raise AssertionError("a request head inside a body: the parser lost the framing")
            if not await self._fill():
                raise ClientGone("client closed the connection in the middle of a request")
