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

from proxyagent.http.headers import Headers
from proxyagent.http.messages import RequestHead
from proxyagent.http.upstream import ConnectionPool
from proxyagent.metrics import MeshMetrics
from proxyagent.telemetry import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, HttpSpans, SpanExporter

if TYPE_CHECKING:
    from proxyagent.http.downstream import DownstreamConnection


# Request headers the proxy writes itself on the way up: whatever the client sent is replaced.
PROXY_WRITTEN = frozenset({b"traceparent", b"expect", b"x-mesh-hops"})


@dataclass(slots=True)
class Target:
    """Where one request goes, and what to say about it in metrics."""

    host: str
    port: int
    path: bytes
    destination_service: str
    destination_workload: str
    source_workload: str
    timeout_s: float
    extra_headers: Headers = field(default_factory=list)
    # Headers dropped from the request: PROXY_WRITTEN plus the names in extra_headers.
    replaces: frozenset[bytes] = PROXY_WRITTEN
    on_done: Callable[[], None] | None = None


class Router(Protocol):
    direction: str

    def route(self, head: RequestHead) -> Target:
        """Where the request goes; raises ``MeshError`` when it cannot go anywhere."""
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
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.connections: set[DownstreamConnection] = set()

    def exchange_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def exchange_ended(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()

    async def drain(self, deadline_s: float) -> None:
        """Wait for in-flight requests to finish (up to ``deadline_s``), then close every connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), deadline_s)
        for connection in list(self.connections):
            connection.close()
