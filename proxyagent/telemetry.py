"""Spans for every proxied request, exported in OpenTelemetry's wire format (OTLP over gRPC).

A span is encoded to OTLP bytes when its request ends (``otlp_wire``: cached
attribute blocks, a few concatenations) and queued; a separate task sends
batches to ``TraceService/Export``. Neither the OpenTelemetry SDK's span
objects nor ``opentelemetry-proto`` message objects are built per request:
each costs more than proxying the request it describes. What leaves the agent
is what the SDK's OTLP exporter would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from binascii import unhexlify
from collections import deque
from collections.abc import Callable

import grpc

from proxyagent.channels import ChannelSource
from proxyagent.otlp_wire import (
    MAX_CACHED,
    AttributeCache,
    encode_framed_export_request,
    encode_resource,
    encode_scope,
    encode_span,
    frame_spans,
    span_attribute,
)

logger = logging.getLogger(__name__)

# opentelemetry.proto.trace.v1.Span.SpanKind
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_ERROR_LOG_INTERVAL_S = 60.0


class HttpSpans:
    """Encodes one span per proxied request, with the semantic-convention HTTP attributes and the mesh edge."""

    def __init__(self, exporter: SpanExporter, kind: int) -> None:
        self.exporter = exporter
        self.kind = kind
        # (name, attribute block) by everything but the path, which has a cache of its own.
        self._blocks: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
        self._paths = AttributeCache()

    def record(
        self,
        trace_id: bytes,
        parent_span_id: bytes | None,
        span_id: bytes,
        method: bytes,
        target: bytes,
        version: str,
        status: int,
        edge: tuple[str, str, str, str, str],
        mesh_error: str | None,
        start_ns: int,
        end_ns: int,
        extra: bytes = b"",
    ) -> None:
        """One span; ids as the lowercase hex of ``traceparent``, no parent for a root. ``extra``: more encoded
        attributes and events (the policy path's tries)."""
        name, block = self.shared_parts(method, version, status, edge, mesh_error)
        path = target.partition(b"?")[0]
        self.exporter.record(
            encode_span(
                trace_id=unhexlify(trace_id),
                span_id=unhexlify(span_id),
                parent_span_id=unhexlify(parent_span_id) if parent_span_id is not None else b"",
                name=name,
                kind=self.kind,
                start_ns=start_ns,
                end_ns=end_ns,
                attributes=block + self._paths.block(path, (("url.path", path.decode("latin-1")),)) + extra,
                error=status >= 500,
            )
        )

    def shared_parts(
        self, method: bytes, version: str, status: int, edge: tuple[str, str, str, str, str], mesh_error: str | None
    ) -> tuple[bytes, bytes]:
        """(span name, encoded attributes) shared by every span of this method, status and edge: all but the path."""
        key = (method, version, status, edge, mesh_error)
        cached = self._blocks.get(key)
        if cached is None:
            cached = self._encode_block(method, version, status, edge, mesh_error)
            if len(self._blocks) < MAX_CACHED:
                self._blocks[key] = cached
        return cached

    @staticmethod
    def _encode_block(
        method: bytes, version: str, status: int, edge: tuple[str, str, str, str, str], mesh_error: str | None
    ) -> tuple[bytes, bytes]:
        _, source, service, workload, _ = edge
        attributes: list[tuple[str, str | int]] = [
            ("http.request.method", method.decode("latin-1")),
            ("http.response.status_code", status),
            ("network.protocol.version", version),
            ("server.address", service),
            ("mesh.source.workload", source),
            ("mesh.destination.service", service),
            ("mesh.destination.workload", workload),
        ]
        if mesh_error is not None:
            attributes += [("mesh.error", mesh_error), ("error.type", mesh_error)]
        elif status >= 500:
            attributes.append(("error.type", str(status)))
        return method + b" " + service.encode(), b"".join([span_attribute(k, v) for k, v in attributes])


class OtlpClient:
    """One lazily opened gRPC channel to an OTLP receiver, sending requests already encoded to bytes."""

    def __init__(self, target: str, tls_roots: Callable[[], bytes] | None = None) -> None:
        self.target = target
        # TLS when ``tls_roots`` gives the PEM roots to verify the receiver with (the control plane's).
        self._channels = ChannelSource(target, tls_roots)
        self._last_error_log = 0.0
        self.failed_total = 0

    async def send(self, method: str, request: bytes) -> bool:
        # The reply (an Export*ServiceResponse) is not needed.
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channels.channel().unary_unary(
            method, request_serializer=None, response_deserializer=None
        )
        try:
            await call(request, timeout=5.0)
        except grpc.aio.AioRpcError as exc:
            self.failed_total += 1
            now = time.monotonic()
            if now - self._last_error_log > _ERROR_LOG_INTERVAL_S:
                self._last_error_log = now
                logger.warning("OTLP export to %s failed: %s (%s)", self.target, exc.code().name, exc.details())
            return False
        return True

    async def close(self) -> None:
        await self._channels.close()


class SpanExporter:
    """Bounded queue plus a batching export task. When the queue is full, new spans are dropped and counted:
    telemetry must never slow down or break the traffic it describes."""

    def __init__(
        self,
        target: str,
        resource: dict[str, str],
        *,
        tls_roots: Callable[[], bytes] | None = None,
        max_queue: int = 8192,
        batch_size: int = 512,
        interval_s: float = 1.0,
    ) -> None:
        self._client = OtlpClient(target, tls_roots)
        self._resource = encode_resource(resource)
        self._scope = encode_scope("proxyagent")
        self._queue: deque[bytes] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        # Spans encoded elsewhere (the native relay): each call returns the oldest framed ScopeSpans.spans
        # entries, up to a count, and how many there were.
        self._sources: list[Callable[[int], tuple[bytes, int]]] = []
        self.exported_total = 0
        self.dropped_total = 0
        self.failed_exports_total = 0

    def add_source(self, take: Callable[[int], tuple[bytes, int]]) -> None:
        self._sources.append(take)

    def wake(self) -> None:
        """A source has a batch ready."""
        self._wake.set()

    def record(self, span: bytes) -> None:
        if len(self._queue) >= self._max_queue:
            self.dropped_total += 1
            return
        self._queue.append(span)
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            await self._export(frame_spans(batch), len(batch))
        for take in self._sources:
            while True:
                framed, count = take(self._batch_size)
                if not count:
                    break
                await self._export(framed, count)

    async def _export(self, framed: bytes, count: int) -> None:
        if await self._client.send(_EXPORT_METHOD, encode_framed_export_request(self._resource, self._scope, framed)):
            self.exported_total += count
        else:
            self.failed_exports_total += 1
            self.dropped_total += count

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5.0)
        await self._client.close()
