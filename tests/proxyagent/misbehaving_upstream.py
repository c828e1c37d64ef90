"""An HTTP/1.1 upstream the tests script: it answers, fails, hangs or resets, and says which instance served.

It runs on its own event loop thread (asyncio protocols and httptools), so a
hanging request holds only its own connection. Each request takes the next
scripted behaviour, or the default once the script is used up:

- ``"ok"``: 200, a JSON body naming the instance and counting requests;
- an ``int``: that status, with a JSON body;
- ``"hang"``: no answer until ``release()`` (then 200), or the connection closes;
- ``"reset"``: the connection is aborted (RST) without an answer;
- ``"close"``: the connection is closed (FIN) without an answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import httptools

from tests.proxyagent.mesh_harness import LoopThread

Behaviour = str | int


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_length: int
    body_sha256: str


class _Connection(asyncio.Protocol):
    def __init__(self, upstream: MisbehavingUpstream) -> None:
        self._upstream = upstream
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._upstream.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._upstream.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        body = bytes(self._body)
        seen = Seen(
            method=self._parser.get_method().decode(),
            path=self._url.decode(),
            headers={k.decode().lower(): v.decode() for k, v in self._headers},
            body_length=len(body),
            body_sha256=hashlib.sha256(body).hexdigest(),
        )
        self._upstream.handle(self, seen)

    def respond(self, status: int, payload: dict[str, object]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        body = json.dumps(payload).encode()
        self.transport.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
            % (status, len(body), body)
        )


class MisbehavingUpstream:
    def __init__(self, name: str, loop: LoopThread, version: str = "v1") -> None:
        self.name = name
        self.version = version
        self._loop = loop
        self._lock = threading.Lock()
        self._script: deque[Behaviour] = deque()
        self.default: Behaviour = "ok"
        self.seen: list[Seen] = []
        self.open_connections = 0
        self.max_open_connections = 0
        self._hanging: list[_Connection] = []
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    # Test side (any thread)

    def script(self, *behaviours: Behaviour, then: Behaviour | None = None) -> None:
        with self._lock:
            self._script = deque(behaviours)
            if then is not None:
                self.default = then

    def behave(self, default: Behaviour) -> None:
        with self._lock:
            self._script.clear()
            self.default = default

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def release(self) -> None:
        """Answer every hanging request with 200."""

        def answer() -> None:
            hanging, self._hanging = self._hanging, []
            for conn in hanging:
                conn.respond(200, {"instance": self.name, "version": self.version, "released": True})

        self._loop.loop.call_soon_threadsafe(answer)

    # Upstream side (its loop)

    def connection_opened(self, conn: _Connection) -> None:
        self._connections.add(conn)
        with self._lock:
            self.open_connections += 1
            self.max_open_connections = max(self.max_open_connections, self.open_connections)

    def connection_closed(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        with self._lock:
            self.open_connections -= 1
        if conn in self._hanging:
            self._hanging.remove(conn)

    def handle(self, conn: _Connection, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
            count = len(self.seen)
            behaviour = self._script.popleft() if self._script else self.default
        transport = conn.transport
        assert transport is not None
        if behaviour == "hang":
            self._hanging.append(conn)
        elif behaviour == "reset":
            transport.abort()
        elif behaviour == "close":
            transport.close()
        elif isinstance(behaviour, int):
            conn.respond(behaviour, {"instance": self.name, "version": self.version, "count": count})
        else:
            conn.respond(
                200,
                {
                    "instance": self.name,
                    "version": self.version,
                    "count": count,
                    "body_length": seen.body_length,
                    "body_sha256": seen.body_sha256,
                },
            )

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(lambda: _Connection(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                if conn.transport is not None:
                    conn.transport.abort()
            self._hanging.clear()
            await self._server.wait_closed()


@contextmanager
def upstreams(*specs: tuple[str, str]) -> Iterator[list[MisbehavingUpstream]]:
    """Upstreams named and versioned by ``specs`` ((name, version) pairs), on one loop thread of their own."""
    loop = LoopThread()
    started = [MisbehavingUpstream(name, loop, version) for name, version in specs]
    try:
        for upstream in started:
            loop.run(upstream.start())
        yield started
    finally:
        for upstream in started:
            loop.run(upstream.stop())
        loop.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds, failing after ``timeout_s``: waiting on a condition, not a time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)  # polling interval while another thread (the agent's loop) makes progress
