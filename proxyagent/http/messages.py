"""Reading HTTP/1.1 messages off a stream with httptools (llhttp in strict mode).

The parser is callback-driven; these readers turn its callbacks into an
ordered event queue and hand out one message head, then its body chunk by
chunk, so a body is streamed and never held whole.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum, auto

import httptools

from proxyagent.http.headers import Headers, get
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

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    version: str
    headers: Headers
    keep_alive: bool
    chunked: bool
    content_length: int | None
    # Which message on the connection this head belongs to (1xx interim ones count).
    message_index: int = 0


class ClientGone(Exception):  # noqa: N818 - a condition, not a failure of ours
    """The client closed its connection in the middle of a message."""


class UpstreamGone(Exception):  # noqa: N818
    """The upstream closed its connection before or during a response."""


def _framing(headers: Headers) -> tuple[bool, int | None]:
    encoding = get(headers, b"transfer-encoding")
    if encoding is not None:
        if encoding.strip().lower() != b"chunked":
            # We re-frame bodies, so a transfer coding other than chunked would be lost on the way.
            raise MeshError(MeshErrorCode.BAD_REQUEST, "only 'Transfer-Encoding: chunked' is supported")
        return True, None
    length = get(headers, b"content-length")
    return False, int(length) if length is not None else None


class _Callbacks:
    """Collects parser callbacks as events. The head is built inside ``on_headers_complete``,
    while the parser still describes that message (a later message in the same read would
    otherwise overwrite its status and headers)."""

    def __init__(self, build_head: Callable[[_Callbacks], object]) -> None:
        self.events: deque[tuple[_Event, object]] = deque()
        self._build_head = build_head
        self.begun = 0
        self.url = bytearray()
        self.reason = b""
        self.headers: Headers = []

    def on_message_begin(self) -> None:
        self.begun += 1
        self.url = bytearray()
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, status: bytes) -> None:
        self.reason = status

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
        parser = self._parser
        try:
            chunked, length = _framing(cb.headers)
        except MeshError as exc:
            return exc
        return RequestHead(
            method=parser.get_method(),
            target=bytes(cb.url),
            version=parser.get_http_version(),
            headers=cb.headers,
            keep_alive=parser.should_keep_alive(),
            upgrade=parser.should_upgrade(),
            chunked=chunked,
            content_length=length,
        )

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


class ResponseReader:
    """One response from an upstream connection (1xx interim responses skipped)."""

    def __init__(self, reader: asyncio.StreamReader, *, head_request: bool) -> None:
        self._reader = reader
        self._head_request = head_request
        self._cb = _Callbacks(self._build_head)
        self._parser = httptools.HttpResponseParser(self._cb)
        self.head: ResponseHead | None = None
        self.upgraded_leftover = b""
        self._done = False
        self._got_bytes = False
        self._final_message = 0

    @property
    def got_bytes(self) -> bool:
        return self._got_bytes

    def _feed(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded_leftover = data[upgrade.args[0] :]
        except httptools.HttpParserError as exc:
            raise UpstreamGone(f"malformed response: {exc}") from None

    def _build_head(self, cb: _Callbacks) -> ResponseHead | UpstreamGone:
        parser = self._parser
        try:
            chunked, length = _framing(cb.headers)
        except MeshError as exc:
            return UpstreamGone(f"unsupported response framing: {exc.detail}")
        return ResponseHead(
            status=parser.get_status_code(),
            reason=cb.reason,
            version=parser.get_http_version(),
            headers=cb.headers,
            keep_alive=parser.should_keep_alive(),
            chunked=chunked,
            content_length=length,
            message_index=cb.begun,
        )

    async def read_head(self) -> ResponseHead:
        """The final (non-interim) response head; reading it again returns the same head."""
        if self.head is not None:
            return self.head
        events = self._cb.events
        interim = False
        while True:
            while events:
                kind, payload = events.popleft()
                if kind is _Event.END and interim:
                    interim = False
                    continue
                if kind is not _Event.HEAD:
                    continue
                if isinstance(payload, UpstreamGone):
                    raise payload
                assert isinstance(payload, ResponseHead)
                if 100 <= payload.status < 200 and payload.status != 101:
                    # An interim response (100 Continue, 103 Early Hints): skip it and its END.
                    interim = True
                    continue
                self.head = payload
                self._final_message = payload.message_index
                if self._head_request or payload.status in (101, 204, 304):
                    self._done = True
                return payload
            data = await self._reader.read(READ_SIZE)
            if not data:
                raise UpstreamGone("upstream closed the connection before responding")
            self._feed(data)

    def buffered_body(self) -> list[bytes]:
        """Body chunks already parsed with the head, so they can go out in the same write."""
        chunks: list[bytes] = []
        events = self._cb.events
        while events and not self._done:
            kind, payload = events[0]
            if kind is _Event.BODY:
                assert isinstance(payload, bytes)
                chunks.append(payload)
                events.popleft()
            elif kind is _Event.END:
                events.popleft()
                self._done = True
            else:
                break
        return chunks

    @property
    def complete(self) -> bool:
        return self._done

    @property
    def reusable(self) -> bool:
        """Complete, keep-alive, and nothing after it: bytes past the response's end would be
        read as the next request's answer."""
        head = self.head
        return self._done and head is not None and head.keep_alive and self._cb.begun == self._final_message

    @property
    def close_delimited(self) -> bool:
        head = self.head
        return head is not None and not head.chunked and head.content_length is None and not self._done

    async def body(self, idle_timeout_s: float) -> AsyncIterator[bytes]:
        events = self._cb.events
        while not self._done:
            while events and not self._done:
                kind, payload = events.popleft()
                if kind is _Event.BODY:
                    assert isinstance(payload, bytes)
                    yield payload
                elif kind is _Event.END:
                    self._done = True
            if self._done:
                return
            try:
                async with asyncio.timeout(idle_timeout_s):
                    data = await self._reader.read(READ_SIZE)
            except TimeoutError:
                raise UpstreamGone(f"response body stalled for {idle_timeout_s:g} s") from None
            if not data:
                if self.close_delimited:
                    self._done = True
                    return
                raise UpstreamGone("upstream closed the connection in the middle of a response")
            self._feed(data)
