"""The bridge between the native relay (``_relay``, C) and the rest of the agent (ADR 013).

The C relay serves plain HTTP/1.1 exchanges by itself and asks this bridge
only what is Python's to decide: where a request goes (the router and the
balancer), what to record when it ends (metrics and the span), how to open a
new upstream connection, and how to word a mesh error. A connection whose
request is anything but plain is handed, at that request boundary, to the
Python data path (``DownstreamConnection``) through ``fallback``.

Where the extension was not built (no C compiler), ``AVAILABLE`` is false and
every connection is served by the Python path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from proxyagent.http.downstream import DownstreamConnection
from proxyagent.http.headers import header_lines
from proxyagent.http.heads import REQUEST_FIELDS
from proxyagent.http.proxy import HttpProxy, Target
from proxyagent.http.upstream import TLS_CONNECTS_PER_ENDPOINT
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.routers import SOURCE_WORKLOAD_HEADER

try:
    from proxyagent.http import _relay
except ImportError:  # not built here: the Python path serves every request
    AVAILABLE = False
else:
    AVAILABLE = True

logger = logging.getLogger(__name__)

# The only header a route may drop besides PROXY_WRITTEN that the relay knows by name.
_NATIVE_DROPPABLE = frozenset({SOURCE_WORKLOAD_HEADER})
assert _NATIVE_DROPPABLE <= REQUEST_FIELDS

# Spans the relay encodes before it wakes the exporter, and holds at most (then drops and counts).
SPAN_BATCH = 512
SPAN_QUEUE = 8192

# What the relay reads of a route: (target, origin-form path, pool key, host, port, timeout in
# seconds, header lines the route adds, whether x-mesh-source-workload is dropped).
# The pool key is (host, port, the endpoint's expected SPIFFE id): with mTLS on, the relay's upstream
# connections are mutual TLS (proxyagent.tls.record_layer's transport under the relay's protocol), verified when
# opened.
NativeRoute = tuple[Target, bytes, tuple[str, int, str], str, int, float, bytes, bool]


class NativeRelay:
    """One listener's native relay and the Python side of it."""

    def __init__(self, proxy: HttpProxy) -> None:
        self._proxy = proxy
        self._loop = asyncio.get_running_loop()
        settings = proxy.settings
        spans = proxy.spans
        self.relay = _relay.Relay(
            self,
            self._loop,
            proxy.connections,
            proxy.via_header,
            settings.idle_timeout_s,
            settings.trace_sampling,
            spans.exporter if spans is not None else None,
            spans.kind if spans is not None else 0,
            SPAN_BATCH,
            SPAN_QUEUE,
        )
        self.relay.inbound = proxy.direction == "inbound"
        if spans is not None:
            spans.exporter.add_source(self.relay.take_spans)
        # Mutual TLS only (``TLS_CONNECTS_PER_ENDPOINT``): connects in flight, and exchanges waiting, per pool key.
        self._coalesce = proxy.pool.tls is not None
        self._connects: dict[tuple[str, int, str], int] = {}
        self._waiting: dict[tuple[str, int, str], deque[tuple[_relay.Client, int]]] = {}

    def protocol(self) -> asyncio.Protocol:
        """A protocol for one new client connection (the listener's factory)."""
        return _relay.Client(self.relay)

    def close(self) -> None:
        """Close the pooled upstream connections (the agent is stopping)."""
        self.relay.close_idle()

    # Called by the relay

    def tls_peer(self, transport: asyncio.BaseTransport) -> str | None:
        """Who is calling on a new inbound connection (``HttpProxy.caller_identity``); ``None``: refuse it."""
        return self._proxy.caller_identity(transport)

    def start(self, request_target: bytes, host: bytes, source: bytes | None, peer: str) -> NativeRoute | None:
        """Where a request goes, counted as started; ``None`` when the Python path must answer it (a mesh
        error such as no_route, which that path records with its metrics and span). ``peer``: as ``tls_peer``."""
        proxy = self._proxy
        try:
            target, path = proxy.router.route_parts(request_target, host, source, peer)
        except MeshError:
            return None
        native = target.native
        if native is None:
            if target.policy is not None or target.gate is not None:
                # A destination with a traffic policy, or a service with an authorization policy: the
                # Python path serves it (the gate reads the method and every header).
                return None
            if not target.extra_dropped <= _NATIVE_DROPPABLE:
                if target.on_done is not None:
                    target.on_done()  # route() counted it started with the balancer
                return None
            extra = b"".join(header_lines(target.extra_headers))
            native = target.native = (
                (target.host, target.port, target.identity if proxy.pool.tls is not None else ""),
                target.host,
                target.port,
                target.timeout_s,
                extra,
                SOURCE_WORKLOAD_HEADER in target.extra_dropped,
            )
        proxy.in_flight += 1
        proxy.target_started(target)
        return (target, path, *native)

    def finish(
        self, target: Target, status: int, elapsed_s: float, request_bytes: int, response_bytes: int, denied: bool
    ) -> None:
        """An exchange ``start`` routed has ended; ``status`` 0 when the client left before an answer; ``denied``
        when the callee's sidecar refused it (403 ``denied``). (The relay encodes the span itself.)"""
        proxy = self._proxy
        proxy.in_flight -= 1
        if not proxy.in_flight:
            proxy.exchange_ended()
        proxy.target_done(target)
        if status:
            proxy.observe(target.edge, status, elapsed_s, request_bytes, response_bytes)
            if denied and proxy.direction == "outbound":
                proxy.metrics.count_denied(target.edge, status)

    def span_block(self, target: Target, method: bytes, status: int, mesh_error: str | None) -> tuple[bytes, bytes]:
        """The span name and the attributes every span of this kind and target shares (the relay caches them)."""
        spans = self._proxy.spans
        assert spans is not None, "the relay records spans only when the proxy has an exporter"
        name, attributes = spans.shared_parts(method, "1.1", status, target.edge, mesh_error)
        return name, attributes + target.span_extra

    def connect(self, client: _relay.Client, gen: int, host: str, port: int, key: tuple[str, int, str]) -> None:
        """Find an upstream connection for the client's exchange ``gen`` (none was idle); the answer comes back
        through ``client.connected`` or ``client.connect_failed``."""
        if self._coalesce:
            if self._connects.get(key, 0) >= TLS_CONNECTS_PER_ENDPOINT:
                self._waiting.setdefault(key, deque()).append((client, gen))
                self.relay.waiters += 1
                return
            self._connects[key] = self._connects.get(key, 0) + 1
        self._start_connect(client, gen, host, port, key)

    def _start_connect(self, client: _relay.Client, gen: int, host: str, port: int, key: tuple[str, int, str]) -> None:
        self._proxy.track_connect(self._loop.create_task(self._connect(client, gen, host, port, key)))

    async def _connect(self, client: _relay.Client, gen: int, host: str, port: int, key: tuple[str, int, str]) -> None:
        relay = self.relay
        try:
            upstream = await self._proxy.pool.open(lambda: _relay.Upstream(relay, key), host, port, key[2])
        except MeshError as exc:
            self._connect_ended(key, host, port, exc.detail)
            client.connect_failed(gen, exc.detail)
            return
        except Exception as exc:  # a bug of ours or an odd socket error: answer rather than wait for the timeout
            logger.exception("connecting to %s:%d failed", host, port)
            self._connect_ended(key, host, port, type(exc).__name__)
            client.connect_failed(gen, type(exc).__name__)
            return
        except BaseException:  # cancelled (the agent stopping): the slot is free again
            self._connect_ended(key, host, port, "cancelled")
            raise
        self._connect_ended(key, host, port, None)
        # An exchange gone meanwhile hands it on (the relay offers it to one waiting, or pools it).
        client.connected(gen, upstream)

    def _connect_ended(self, key: tuple[str, int, str], host: str, port: int, failure: str | None) -> None:
        """A connect to ``key`` is over: the exchanges waiting share its failure, or the first of them gets the slot."""
        if not self._coalesce:
            return
        left = self._connects.get(key, 1) - 1
        if left:
            self._connects[key] = left
        else:
            self._connects.pop(key, None)
        if failure is not None:
            if left:
                return  # the connects still in flight may yet serve those waiting
            # Every connect to the endpoint failed: those waiting behind them would each wait for the same answer.
            for client, gen in self._take_waiting(key):
                client.connect_failed(gen, failure)
            return
        first = self._next_waiting(key)
        if first is not None:
            self._connects[key] = self._connects.get(key, 0) + 1
            self._start_connect(*first, host, port, key)

    def released(self, key: tuple[str, int, str], upstream: _relay.Upstream) -> bool:
        """A connection to ``key`` is free again: the first exchange still waiting for one goes on with it."""
        first = self._next_waiting(key)
        if first is None:
            return False
        client, gen = first
        client.connected(gen, upstream)
        return True

    def _next_waiting(self, key: tuple[str, int, str]) -> tuple[_relay.Client, int] | None:
        """The first exchange still waiting for a connection to ``key``, taken out of line (those gone meanwhile
        are dropped on the way)."""
        waiting = self._waiting.get(key)
        while waiting:
            client, gen = waiting.popleft()
            self.relay.waiters -= 1
            if not waiting:
                del self._waiting[key]
            if client.waiting(gen):
                return client, gen
        return None

    def _take_waiting(self, key: tuple[str, int, str]) -> list[tuple[_relay.Client, int]]:
        waiting = self._waiting.pop(key, deque())
        self.relay.waiters -= len(waiting)
        return [(client, gen) for client, gen in waiting if client.waiting(gen)]

    def error(self, target: Target, code: str, detail: str | None, keep_alive: bool) -> bytes:
        """The response for a mesh error the relay met after routing (``detail`` None: the request timeout)."""
        if detail is None:
            detail = f"no response from {target.destination_service} in {target.timeout_s:g} s"
        self.count_error(code)
        return MeshError(MeshErrorCode(code), detail).response(keep_alive=keep_alive)

    def count_error(self, code: str) -> None:
        proxy = self._proxy
        proxy.metrics.mesh_errors.labels(proxy.direction, code).inc()

    def fallback(self) -> DownstreamConnection:
        """The Python path's protocol, to which the relay hands a connection for good."""
        return DownstreamConnection(self._proxy)
