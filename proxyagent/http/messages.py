"""Requests read off an ``asyncio`` stream, for the low-volume admin endpoint.

The proxy itself parses in its protocols' ``data_received`` (``exchange``,
``downstream``); both build heads with ``heads.request_head``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from enum import Enum, auto

import httptools

from proxyagent.http.headers import Headers
from proxyagent.http.heads import RequestHead, request_head
from proxyagent.mesh_errors import MeshError, MeshErrorCode

READ_SIZE = 65536


class _Event(Enum):
    HEAD = auto()
    BODY = auto()
    END = auto()


class ClientGone(Exception):  # noqa: N818 - a condition, not a failure of ours
    """The client closed its connection in the middle of a message."""


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
