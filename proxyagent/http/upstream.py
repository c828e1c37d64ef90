"""Connections to upstreams (other agents' inbound ports, or the local app), pooled per address.

A connection is an ``asyncio.Protocol``: the bytes it receives go straight to
the exchange it is lent to, with no stream buffer or task wake-up in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from proxyagent.mesh_errors import MeshError, MeshErrorCode

_MAX_IDLE_PER_HOST = 64


class UpstreamListener(Protocol):
    """What an exchange holding a connection hears from it."""

    def upstream_data(self, data: bytes) -> None: ...

    def upstream_closed(self, eof: bool) -> bool:
        """The upstream sent EOF (``eof``) or the connection is gone; returns whether to keep writing."""
        ...

    def upstream_paused(self, paused: bool) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: ConnectionPool, address: tuple[str, int]) -> None:
        self._pool = pool
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.listener: UpstreamListener | None = None
        self.reused = False
        self.closed = False
        # Called once when the connection is gone: a circuit breaker counting the connections it opened.
        self.on_lost: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        listener = self.listener
        if listener is None:
            # Bytes while idle (a 408, say) would be taken for the next request's response.
            self.close()
            return
        listener.upstream_data(data)

    def eof_received(self) -> bool:
        listener = self.listener
        # A tunnel keeps writing after the upstream's EOF (a half-close); anything else is done.
        keep_writing = listener.upstream_closed(True) if listener is not None else False
        if not keep_writing:
            self.closed = True
        return keep_writing

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        on_lost = self.on_lost
        if on_lost is not None:
            self.on_lost = None
            on_lost()
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_closed(False)

    def pause_writing(self) -> None:
        if self.listener is not None:
            self.listener.upstream_paused(True)

    def resume_writing(self) -> None:
        if self.listener is not None:
            self.listener.upstream_paused(False)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        self.listener = None
        if self.transport is not None:
            self.transport.close()


P = TypeVar("P", bound=asyncio.BaseProtocol)


async def open_connection(factory: Callable[[], P], host: str, port: int, timeout_s: float) -> P:
    """A new TCP connection served by ``factory``'s protocol; raises ``MeshError`` (upstream_connect_failed)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            _, protocol = await loop.create_connection(factory, host, port)
    except TimeoutError:
        raise MeshError(MeshErrorCode.UPSTREAM_CONNECT_FAILED, f"connect to {host}:{port} timed out") from None
    except OSError as exc:
        raise MeshError(
            MeshErrorCode.UPSTREAM_CONNECT_FAILED, f"connect to {host}:{port} failed: {exc.strerror or exc}"
        ) from None
    return protocol


class ConnectionPool:
    """Idle keep-alive connections per (host, port); a connection is either lent out or idle, never both."""

    def __init__(self, connect_timeout_s: float = 2.0) -> None:
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self.connect_timeout_s = connect_timeout_s

    def take_idle(self, host: str, port: int) -> UpstreamConnection | None:
        idle = self._idle.get((host, port))
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def connect(self, host: str, port: int) -> UpstreamConnection:
        key = (host, port)
        return await open_connection(lambda: UpstreamConnection(self, key), host, port, self.connect_timeout_s)

    def release(self, conn: UpstreamConnection) -> None:
        conn.listener = None
        idle = self._idle.setdefault(conn.address, [])
        if conn.closed or conn.transport is None or conn.transport.is_closing() or len(idle) >= _MAX_IDLE_PER_HOST:
            conn.close()
        else:
            idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.address)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        conns = [conn for idle in self._idle.values() for conn in idle]
        self._idle.clear()
        for conn in conns:
            conn.close()
