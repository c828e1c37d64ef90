"""One client connection: parses its requests and runs them, one exchange at a time, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import cast

import httptools

from proxyagent.http.exchange import NEVER, PAUSE_BUFFERED, PAUSE_QUEUED, PAUSE_TUNNEL, PAUSE_UPSTREAM, Exchange
from proxyagent.http.headers import Headers
from proxyagent.http.heads import request_head
from proxyagent.http.proxy import HttpProxy
from proxyagent.mesh_errors import MeshError, MeshErrorCode

logger = logging.getLogger(__name__)

# Reading stays paused for good once a broken request waits to be refused.
_PAUSE_REFUSED = 16


class DownstreamConnection(asyncio.Protocol):
    def __init__(self, proxy: HttpProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        # The caller's SPIFFE id, verified in the TLS handshake, when this connection is mutual TLS; every
        # request on it carries it (metrics, the server span, authorization).
        self.peer_identity = ""
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: Headers = []
        self._bad: MeshError | None = None
        # The exchange whose body the parser is reading, the one being answered, and those queued behind it.
        self._parsing: Exchange | None = None
        self.active: Exchange | None = None
        self._queued: deque[Exchange] = deque()
        # After an upgrade request, bytes from the client are not HTTP: they go to this exchange as they are.
        self._raw: Exchange | None = None
        self._upgrading: Exchange | None = None
        self._paused = 0
        self.write_paused = False
        self.closed = False
        # True while the parser runs: exchanges gather upstream bytes and the read ends with one flush.
        self.feeding = False
        # The client half-closed after its request: answer it, then close.
        self._eof = False
        # A broken request behind ones still being answered: refused once they are.
        self._refusal: MeshError | None = None
        self.loop = asyncio.get_running_loop()
        self._last_done = self.loop.time()
        # One timer per connection, for both the idle timeout and the active exchange's deadline. It is
        # moved earlier only when a deadline needs it and otherwise re-armed when it fires, so a busy
        # keep-alive connection creates about one timer per timeout rather than one per request.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = NEVER

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.proxy.caller_identity(transport)
        if peer is None:
            self.closed = True
            self.transport.abort()
            return
        self.peer_identity = peer
        self.proxy.connections.add(self)
        self._arm(self._last_done + self.proxy.settings.idle_timeout_s)

    def data_received(self, data: bytes) -> None:
        try:
            if self._raw is not None:
                self._raw.client_raw(data)
                return
            self.feeding = True
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                self._raw = self._upgrading
                leftover = data[upgrade.args[0] :]
                if self._raw is not None and leftover:
                    self._raw.client_raw(leftover)
            except httptools.HttpParserError as exc:
                self._refuse(MeshError(MeshErrorCode.BAD_REQUEST, f"malformed request: {exc}"))
                return
            finally:
                self.feeding = False
            if self._bad is not None:
                self._refuse(self._bad)
                return
            active = self.active
            if active is not None:
                active.flush_up()
        except Exception:  # a bug of ours: keep the agent up, drop only this connection
            logger.exception("unexpected error on a %s connection", self.proxy.direction)
            self.close()

    def eof_received(self) -> bool:
        raw = self._raw
        if raw is not None:
            return raw.client_eof()
        if (self.active is None and not self._queued) or self._parsing is not None:
            # Nothing to answer, or EOF in the middle of a request body: nothing more will come.
            return False
        self._eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        active, self.active = self.active, None
        self._queued.clear()
        if active is not None:
            active.abort()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.active is not None:
            self.active.client_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None:
            self.active.client_paused(False)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.closed or self._bad is not None:
            return
        try:
            head = request_head(self._parser, self._url, self._headers)
        except MeshError as exc:
            self._bad = exc
            return
        if head.method == b"CONNECT":
            self._bad = MeshError(MeshErrorCode.BAD_REQUEST, "CONNECT tunnels are not supported; send plain HTTP")
            return
        exchange = Exchange(self.proxy, self, head)
        self._parsing = exchange if head.has_body or head.upgrade else None
        if head.upgrade:
            self._upgrading = exchange
        if self.active is None and not self._queued:
            self.active = exchange
            exchange.start()
        else:
            self._queued.append(exchange)
            self.pause(PAUSE_QUEUED)

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None:
            self._parsing.request_body(body)

    def on_message_complete(self) -> None:
        parsing, self._parsing = self._parsing, None
        if parsing is not None:
            parsing.request_end()

    # Used by exchanges

    @property
    def body_pending(self) -> bool:
        """Whether the request being answered still has body bytes on the connection."""
        return self._parsing is not None and self._parsing is self.active

    def watch(self, deadline: float) -> None:
        """Have ``check_deadline`` of the active exchange called once ``deadline`` (loop time) is past."""
        if deadline < self._timer_at:
            self._arm(deadline)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._paused |= reason

    def resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def exchange_finished(self, exchange: Exchange, keep_alive: bool) -> None:
        """The active exchange is answered: close, or go on with the next request."""
        if exchange is not self.active:
            return
        self.active = None
        if not keep_alive or self.closed:
            self.close()
            return
        self.resume(PAUSE_UPSTREAM | PAUSE_BUFFERED | PAUSE_TUNNEL)
        if self._queued:
            # Started from the loop, not from here: a long pipeline of requests answered at once
            # (mesh errors, say) would otherwise recurse once per request.
            self.loop.call_soon(self._start_next)
            return
        if self._refusal is not None:
            self.write(self._refusal.response(keep_alive=False))
            self.close()
        elif self._eof:
            self.close()
        self._last_done = self.loop.time()

    def _start_next(self) -> None:
        if self.closed or self.active is not None or not self._queued:
            return
        self.active = self._queued.popleft()
        if not self._queued:
            self.resume(PAUSE_QUEUED)
        self.active.start()
        active = self.active
        if active is not None:
            active.flush_up()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            # close() sends what is buffered first, so an answer written just before still goes out.
            self.transport.close()
        self.closed = True

    # Internals

    def _refuse(self, error: MeshError) -> None:
        """A malformed or ambiguous request: answer 400 and close, never forward it."""
        self.proxy.metrics.mesh_errors.labels(self.proxy.direction, str(error.code)).inc()
        parsing = self._parsing
        if parsing is not None and parsing is self.active and parsing.answered:
            # The broken request's response is already on its way: all we can do is cut it short.
            self.close()
            return
        if parsing is not None and parsing is self.active:
            parsing.abort()
            self.active = None
        elif parsing is not None and parsing in self._queued:
            self._queued.remove(parsing)
        if self.active is not None or self._queued:
            # Requests before the broken one are still being answered: answer them, then refuse.
            self.pause(_PAUSE_REFUSED)
            self._refusal = error
            if self.active is not None:
                self.active.flush_up()  # its request came in the same read and was held for one write
            return
        with contextlib.suppress(Exception):
            self.write(error.response(keep_alive=False))
        self.close()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = NEVER
        if self.closed:
            return
        now = self.loop.time()
        active = self.active
        if active is not None and active.deadline <= now:
            active.check_deadline(now)
            if self.closed:
                return
            active = self.active
        idle_s = self.proxy.settings.idle_timeout_s
        if active is None:
            due = self._last_done + idle_s
            if now >= due:
                self.close()
                return
        else:
            due = min(active.deadline, now + idle_s)
        self._arm(max(due, now + 0.001))
