"""The HTTP/1.1 forwarding engine shared by the outbound and inbound listeners.

Everything runs in protocol callbacks: a downstream connection's
``data_received`` parses requests and writes them to a pooled upstream
connection; the upstream's ``data_received`` parses the response and writes
it down, head and body in one write. No task or future is involved in a
request on a pooled connection, which is what keeps a Python proxy's cost per
request near the system calls it cannot avoid. Bodies are streamed with
transport flow control in both directions, so a slow client or a large upload
only ever holds up its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from proxyagent.http.headers import PROXY_WRITTEN, Headers
from proxyagent.http.heads import REQUEST_FIELDS, RequestHead
from proxyagent.http.upstream import ConnectionPool
from proxyagent.metrics import InFlight, MeshMetrics, status_class
from proxyagent.otlp_wire import span_attribute
from proxyagent.telemetry import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, HttpSpans, SpanExporter
from proxyagent.tls.spiffe import peer_id

if TYPE_CHECKING:
    from proxyagent.authz.gate import InboundGate
    from proxyagent.resilience.destination import DestinationPolicy


@dataclass(slots=True)
class Target:
    """Where requests go, and what to say about them in metrics.

    Routers build one per destination endpoint (or caller) and hand the same
    object to every request that goes there: nothing in it is per request.
    """

    host: str
    port: int
    destination_service: str
    destination_workload: str
    source_workload: str
    timeout_s: float
    direction: str
    extra_headers: Headers = field(default_factory=list)
    # Headers dropped from the request: PROXY_WRITTEN plus the names in extra_headers.
    replaces: frozenset[bytes] = PROXY_WRITTEN
    on_done: Callable[[], None] | None = None
    # Set on a destination's own target (no endpoint yet, host ""): its requests take the policy path, which
    # picks an endpoint target per try (proxyagent.resilience).
    policy: DestinationPolicy | None = None
    # Whether requests cross between sidecars over mutual TLS: inbound, the caller's connection is mTLS;
    # outbound, connections to the endpoint are.
    mtls: bool = False
    # A SPIFFE id: outbound, the one the endpoint's sidecar must present ("": any of the mesh's); inbound,
    # the caller's verified one ("": a plaintext caller).
    identity: str = ""
    # Inbound, when the service's policy has anything to enforce: every request passes it before it goes to
    # the app (the Python path; the native relay hands such requests over).
    gate: InboundGate | None = None
    # (direction, source workload, destination service, destination workload, mtls "true"/"false"): the
    # metric labels and span edge, less the status class.
    edge: tuple[str, str, str, str, str] = field(init=False)
    # Span attributes of this target beyond the edge (the caller's principal on a server span), encoded.
    span_extra: bytes = field(init=False)
    # The in-flight gauge of this target's (direction, destination), looked up on first use.
    in_flight: InFlight | None = field(init=False, default=None)
    # ``replaces`` beyond PROXY_WRITTEN: names a request's pre-serialized headers may still hold.
    extra_dropped: frozenset[bytes] = field(init=False)
    # What the native relay needs of this target, built on its first use there (native_relay.NativeRoute).
    native: tuple[tuple[str, int, str], str, int, float, bytes, bool] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.edge = (
            self.direction,
            self.source_workload,
            self.destination_service,
            self.destination_workload,
            "true" if self.mtls else "false",
        )
        self.span_extra = (
            span_attribute("mesh.peer.principal", self.identity)
            if self.identity and self.direction == "inbound"
            else b""
        )
        self.extra_dropped = self.replaces - PROXY_WRITTEN
        if not self.extra_dropped <= REQUEST_FIELDS:
            # The request path finds these in RequestHead.fields; a name outside it would slip through.
            raise ValueError(f"replaced headers must be among REQUEST_FIELDS: {sorted(self.extra_dropped)}")


class ClientConnection(Protocol):
    """An open client connection, of either data path: drain closes what is left of them."""

    def close(self) -> None: ...


class Router(Protocol):
    direction: str

    def route(self, head: RequestHead, peer: str = "") -> tuple[Target, bytes]:
        """Where the request goes and the origin-form path to send; raises ``MeshError`` when it cannot go
        anywhere. ``peer``: the SPIFFE id the client connection verified ("" for plaintext)."""
        ...

    def route_parts(
        self, request_target: bytes, host: bytes | None, source: bytes | None, peer: str = ""
    ) -> tuple[Target, bytes]:
        """``route`` from what it reads of a request: its target, Host and x-mesh-source-workload."""
        ...


@dataclass
class ProxySettings:
    agent_name: str
    # Head sampling for traces this agent starts; a caller's sampling decision is always kept.
    trace_sampling: float = 1.0
    idle_timeout_s: float = 60.0


class HttpProxy:
    """One listener's shared state: routing, the upstream pool, telemetry, and its open connections."""

    def __init__(
        self,
        router: Router,
        pool: ConnectionPool,
        metrics: MeshMetrics,
        settings: ProxySettings,
        spans: SpanExporter | None = None,
    ) -> None:
        self.router = router
        self.direction = router.direction
        kind = SPAN_KIND_CLIENT if router.direction == "outbound" else SPAN_KIND_SERVER
        self.spans = HttpSpans(spans, kind) if spans is not None else None
        self.pool = pool
        self.metrics = metrics
        self.settings = settings
        self.via = b"1.1 " + settings.agent_name.encode()
        self.via_header = b"via: " + self.via + b"\r\n"
        # Exchanges started and not finished; counted by the exchanges themselves.
        self.in_flight = 0
        # Set only while drain() waits, so the request path pays for no event.
        self.drained: asyncio.Future[None] | None = None
        self.connections: set[ClientConnection] = set()
        # Upstream connects in flight (an exchange that ended leaves its connect to finish): drain waits for
        # them, so a stopping agent closes what they open rather than leaving it to the loop's end.
        self.connects: set[asyncio.Task[None]] = set()

    def caller_identity(self, transport: asyncio.BaseTransport) -> str | None:
        """Who is calling on a new client connection: "" on plaintext, the SPIFFE id a mutual TLS handshake
        verified (the chain already), or ``None`` (counted) when that certificate names no workload and the
        connection must be refused. For both data paths."""
        if transport.get_extra_info("sslcontext") is None:
            return ""
        peer = peer_id(transport.get_extra_info("peercert"))
        if peer is None:
            self.metrics.tls_refused.labels(self.direction, "no_identity").inc()
        return peer

    def observe(
        self,
        edge: tuple[str, str, str, str, str],
        status: int,
        elapsed_s: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """A finished exchange's golden metrics."""
        self.metrics.series((*edge, status_class(status))).observe(
            elapsed_s, request_bytes, response_bytes, status >= 500
        )

    def target_started(self, target: Target) -> None:
        gauge = target.in_flight
        if gauge is None:
            gauge = target.in_flight = self.metrics.in_flight_gauge(target.direction, target.destination_service)
        gauge.value += 1

    def target_done(self, target: Target) -> None:
        if target.in_flight is not None:
            target.in_flight.value -= 1
        if target.on_done is not None:
            target.on_done()

    def exchange_ended(self) -> None:
        """Called by an exchange after it took itself off ``in_flight`` and found it zero."""
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def track_connect(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self.connects.add(task)
        task.add_done_callback(self.connects.discard)
        return task

    async def drain(self, deadline_s: float) -> None:
        """Wait for in-flight requests to finish (up to ``deadline_s``), then close every connection, and let
        connects in flight end (their exchanges are over: what they open is closed or pooled, then closed)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline_s
        if self.in_flight:
            self.drained = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained, deadline_s)
        for connection in list(self.connections):
            connection.close()
        if self.connects:
            await asyncio.wait(set(self.connects), timeout=max(0.0, until - loop.time()))
