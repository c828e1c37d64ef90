"""Connections to upstreams (other agents' inbound ports, or the local app), pooled per address.

A connection is an ``asyncio.Protocol``: the bytes it receives go straight to
the exchange it is lent to, with no stream buffer or task wake-up in between.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.metrics import MeshMetrics
from proxyagent.tls.record_layer import open_tls
from proxyagent.tls.spiffe import peer_id

logger = logging.getLogger(__name__)

_MAX_IDLE_PER_HOST = 64
# Mutual-TLS connects in flight to one endpoint, at most. A handshake costs the two sidecars about 1.6 ms of CPU
# together (0.8 ms each, OpenSSL 3.0, ECDSA P-256), some 10 requests' worth: when a burst finds the pool empty (a
# cold start, say), opening a connection per waiting request makes every request wait for every handshake, the
# wait draws more requests in, and they open more connections. With one connect at a time, an exchange that finds
# none idle waits for the first connection released or opened: at 1000 rps from cold, 7 connections and a worst
# request under 10 ms, where 4 at a time opened 14 and held requests up to 38 ms (bench/proxy_overhead.py's
# mTLS pair, measured). The price: a burst of long requests grows the pool one handshake at a time.
# (The native relay's bridge applies the same limit to its own pool.)
TLS_CONNECTS_PER_ENDPOINT = 1


class UpstreamListener(Protocol):
    """What an exchange holding a connection hears from it."""

    def upstream_data(self, data: bytes) -> None: ...

    def upstream_closed(self, eof: bool) -> bool:
        """The upstream sent EOF (``eof``) or the connection is gone; returns whether to keep writing."""
        ...

    def upstream_paused(self, paused: bool) -> None: ...


# Idle connections are kept per (host, port, expected SPIFFE id): a connection verified for one identity is
# never lent for another.
PoolKey = tuple[str, int, str]


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: ConnectionPool, address: PoolKey) -> None:
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


class UpstreamTls(Protocol):
    """Where an outbound pool finds its client TLS context (the current workload certificate)."""

    @property
    def client_context(self) -> ssl.SSLContext | None: ...


async def open_connection(
    factory: Callable[[], P],
    host: str,
    port: int,
    timeout_s: float,
    tls: UpstreamTls | None = None,
    identity: str = "",
    metrics: MeshMetrics | None = None,
) -> P:
    """A new TCP connection served by ``factory``'s protocol; raises ``MeshError`` (upstream_connect_failed).

    With ``tls``: mutual TLS, the server's chain verified against the bundle and its SPIFFE id compared
    with ``identity`` (when given) before the connection is returned, so nothing is ever sent to a
    server that is not who the endpoint should be.
    """
    loop = asyncio.get_running_loop()
    context: ssl.SSLContext | None = None
    if tls is not None:
        context = tls.client_context
        if context is None:
            _count(metrics, "no_certificate")
            raise MeshError(
                MeshErrorCode.UPSTREAM_CONNECT_FAILED,
                f"connect to {host}:{port}: this sidecar has no workload certificate yet for mutual TLS",
            )
    try:
        async with asyncio.timeout(timeout_s):
            if context is None:
                transport, protocol = await loop.create_connection(factory, host, port)
            else:
                transport, protocol = await open_tls(factory, host, port, context)
    except TimeoutError:
        raise MeshError(MeshErrorCode.UPSTREAM_CONNECT_FAILED, f"connect to {host}:{port} timed out") from None
    except ssl.SSLError as exc:
        _count(metrics, "handshake")
        raise MeshError(
            MeshErrorCode.UPSTREAM_CONNECT_FAILED, f"mutual TLS with {host}:{port} failed: {exc.reason or exc}"
        ) from None
    except OSError as exc:
        if context is not None:
            # Reset during the handshake: typically the server refused our certificate.
            _count(metrics, "handshake")
        raise MeshError(
            MeshErrorCode.UPSTREAM_CONNECT_FAILED, f"connect to {host}:{port} failed: {exc.strerror or exc}"
        ) from None
    if context is not None:
        presented = peer_id(transport.get_extra_info("peercert"))
        if presented is None or (identity and presented != identity):
            transport.abort()
            _count(metrics, "no_identity" if presented is None else "identity_mismatch")
            expected = identity or "a workload SPIFFE id"
            raise MeshError(
                MeshErrorCode.UPSTREAM_CONNECT_FAILED,
                f"{host}:{port} presented {presented or 'no SPIFFE id'}, expected {expected}",
            )
    return protocol


def _count(metrics: MeshMetrics | None, reason: str) -> None:
    if metrics is not None:
        metrics.tls_refused.labels("outbound", reason).inc()


class ConnectionPool:
    """Idle keep-alive connections per (host, port, identity); a connection is either lent out or idle, never both.

    With ``tls``, every connection is mutual TLS (an outbound pool in mTLS mode): the handshake happens
    when a connection is opened, never on a request that finds an idle one.
    """

    def __init__(
        self, connect_timeout_s: float = 2.0, tls: UpstreamTls | None = None, metrics: MeshMetrics | None = None
    ) -> None:
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}
        self.connect_timeout_s = connect_timeout_s
        self.tls = tls
        self.metrics = metrics
        # Mutual TLS only (TLS_CONNECTS_PER_ENDPOINT): connects in flight, and exchanges waiting, per key. A
        # waiter's future gets a released connection (if it takes a used one), None (a connect slot is free),
        # or the failure of the connect it waited behind.
        self._connects: dict[PoolKey, int] = {}
        self._waiting: dict[PoolKey, deque[tuple[asyncio.Future[UpstreamConnection | None], bool]]] = {}
        # close() ran (the agent is stopping): a connection released later is closed, not pooled.
        self._closed = False

    def take_idle(self, host: str, port: int, identity: str = "") -> UpstreamConnection | None:
        idle = self._idle.get((host, port, identity))
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def connect(self, host: str, port: int, identity: str = "", *, reuse: bool = True) -> UpstreamConnection:
        """A connection for one exchange that found none idle: a new one, or, with mutual TLS while enough
        connects to the endpoint are in flight, the first connection released (when ``reuse``) or opened."""
        key = (host, port, identity)
        if self.tls is None:
            return await self.open(lambda: UpstreamConnection(self, key), host, port, identity)
        while self._connects.get(key, 0) >= TLS_CONNECTS_PER_ENDPOINT:
            conn = await self._wait_turn(key, reuse)
            if conn is None:
                continue
            # Handed over a loop turn ago, with no listener since: it may have closed meanwhile.
            if not (conn.closed or conn.transport is None or conn.transport.is_closing()):
                return conn
            conn.close()
        self._connects[key] = self._connects.get(key, 0) + 1
        try:
            conn = await self.open(lambda: UpstreamConnection(self, key), host, port, identity)
        except MeshError as exc:
            self._connect_ended(key, exc)
            raise
        except BaseException:
            self._connect_ended(key, None)
            raise
        self._connect_ended(key, None)
        return conn

    @property
    def waiting(self) -> int:
        """Exchanges waiting for a connection (a burst behind the connects in flight)."""
        return sum(len(queue) for queue in self._waiting.values())

    async def _wait_turn(self, key: PoolKey, reuse: bool) -> UpstreamConnection | None:
        waiter: asyncio.Future[UpstreamConnection | None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(key, deque())
        entry = (waiter, reuse)
        queue.append(entry)
        try:
            return await waiter
        except asyncio.CancelledError:
            # The exchange ended (its timeout, its client left) just as a connection was handed to it: keep it.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)
                else:
                    self._pass_turn(key)
            raise
        finally:
            if entry in queue:
                queue.remove(entry)
            if not queue:
                self._waiting.pop(key, None)

    def _connect_ended(self, key: PoolKey, failure: MeshError | None) -> None:
        left = self._connects.get(key, 1) - 1
        if left:
            self._connects[key] = left
        else:
            self._connects.pop(key, None)
        queue = self._waiting.get(key)
        if not queue:
            return
        if failure is not None:
            if left:
                return  # the connects still in flight may yet serve those waiting
            # Every connect to the endpoint failed: those waiting behind them would each wait for the same answer.
            for waiter, _ in queue:
                if not waiter.done():
                    waiter.set_exception(MeshError(failure.code, failure.detail))
            return
        self._pass_turn(key)

    def _pass_turn(self, key: PoolKey) -> None:
        """A connect slot is free: the first exchange still waiting opens the next connection."""
        for waiter, _ in self._waiting.get(key, ()):
            if not waiter.done():
                waiter.set_result(None)
                return

    def _hand_over(self, conn: UpstreamConnection) -> bool:
        for waiter, reuse in self._waiting.get(conn.address, ()):
            if reuse and not waiter.done():
                conn.reused = True
                waiter.set_result(conn)
                return True
        return False

    async def open(self, factory: Callable[[], P], host: str, port: int, identity: str = "") -> P:
        """A new connection as this pool makes them (TLS or not), served by ``factory``'s protocol."""
        return await open_connection(
            factory,
            host,
            port,
            self.connect_timeout_s,
            self.tls,
            identity if self.tls is not None else "",
            self.metrics,
        )

    def release(self, conn: UpstreamConnection) -> None:
        conn.listener = None
        alive = not (self._closed or conn.closed or conn.transport is None or conn.transport.is_closing())
        if alive and conn.address in self._waiting and self._hand_over(conn):
            return
        idle = self._idle.setdefault(conn.address, [])
        if not alive or len(idle) >= _MAX_IDLE_PER_HOST:
            conn.close()
        else:
            idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.address)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        self._closed = True
        conns = [conn for idle in self._idle.values() for conn in idle]
        self._idle.clear()
        for conn in conns:
            conn.close()
