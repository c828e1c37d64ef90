"""The inbound listener with mutual TLS: TLS or plaintext told apart by the first byte, per connection.

A TLS connection starts with a handshake record (``0x16``); HTTP never does.
Each accepted connection is peeked at (``MSG_PEEK``: the byte stays in the
socket) before anything reads it, then handed to asyncio with the current
server ``SSLContext`` (the TLS handshake, client certificate required) or as
it is. The peer authentication mode of the snapshot held at that moment
decides plaintext: STRICT closes it (counted as
``mesh_plaintext_refused_total``), PERMISSIVE serves it.

This costs an accept in Python and a peek per connection, never per request:
callers keep their connections alive.

Accepting is a reader callback rather than a task awaiting ``sock_accept``: a
task cancelled (the agent stopping) just after the kernel handed it a socket
would drop that socket unclosed. Every accepted socket is tracked until it is
handed over or closed, so stopping closes those whose task never ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

from proxyagent.metrics import MeshMetrics
from proxyagent.tls.record_layer import accept_tls

logger = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16
# Connections taken per wake-up of the listening socket, so a burst does not hold the loop.
_ACCEPTS_PER_WAKE = 64
# After a failed accept (out of file descriptors, say), how long to leave the listening socket alone.
_ACCEPT_PAUSE_S = 0.1


class InboundAcceptor:
    """Accepts on ``sock`` and hands each connection to ``tls`` or ``plaintext`` protocols."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        plaintext: Callable[[], asyncio.Protocol],
        tls: Callable[[], asyncio.Protocol],
        server_context: Callable[[], ssl.SSLContext | None],
        strict: Callable[[], bool],
        metrics: MeshMetrics,
        first_byte_timeout_s: float = 10.0,
        handshake_timeout_s: float = 10.0,
    ) -> None:
        self._sock = sock
        self._plaintext = plaintext
        self._tls = tls
        self._server_context = server_context
        self._strict = strict
        self._metrics = metrics
        self._first_byte_timeout_s = first_byte_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume: asyncio.TimerHandle | None = None
        # Connections between accept and hand-over: their tasks, kept so they are not garbage collected, and
        # their sockets, closed at stop when a task was cancelled before it ran.
        self._pending: set[asyncio.Task[None]] = set()
        self._unserved: set[socket.socket] = set()
        self.accepted_total = 0

    def start(self) -> None:
        self._sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._accept_ready)

    async def close(self) -> None:
        """Stop accepting; connections already handed over are the proxy's to drain."""
        loop = self._loop
        if loop is not None:
            loop.remove_reader(self._sock.fileno())
            if self._resume is not None:
                self._resume.cancel()
            self._loop = None
        tasks = list(self._pending)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in self._unserved:
            conn.close()
        self._unserved.clear()
        self._sock.close()

    def _accept_ready(self) -> None:
        loop = self._loop
        assert loop is not None, "the reader is removed before the loop is forgotten"
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors, say: the next accept may succeed once connections close.
                logger.warning("inbound accept failed: %s", exc)
                loop.remove_reader(self._sock.fileno())
                self._resume = loop.call_later(_ACCEPT_PAUSE_S, self._resume_accepting)
                return
            self.accepted_total += 1
            self._unserved.add(conn)
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._serve(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _resume_accepting(self) -> None:
        self._resume = None
        if self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._accept_ready)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        handed_over = False
        try:
            first = await self._peek(loop, conn)
            if first is None:
                return
            if first == TLS_HANDSHAKE:
                context = self._server_context()
                if context is None:
                    self._metrics.tls_refused.labels("inbound", "no_certificate").inc()
                    return
                try:
                    await accept_tls(self._tls, conn, context, self._handshake_timeout_s)
                except (OSError, ssl.SSLError, TimeoutError) as exc:
                    self._metrics.tls_refused.labels("inbound", "handshake").inc()
                    logger.info("inbound TLS handshake failed: %s", exc)
                    return
                handed_over = True
                return
            if self._strict():
                self._metrics.plaintext_refused.inc()
                return
            await loop.connect_accepted_socket(self._plaintext, conn)
            handed_over = True
        except OSError as exc:
            logger.debug("inbound connection lost before it was served: %s", exc)
        finally:
            self._unserved.discard(conn)
            if not handed_over:
                conn.close()

    async def _peek(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> int | None:
        """The connection's first byte, left unread; ``None`` when it closed (or stayed silent too long)."""
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(conn.fileno(), ready)
        try:
            async with asyncio.timeout(self._first_byte_timeout_s):
                await readable
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(conn.fileno())
        try:
            data = conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:  # spurious wake-up: the byte is not there after all
            return await self._peek(loop, conn)
        return data[0] if data else None
