"""Spans for every proxied request, exported in OpenTelemetry's wire format (OTLP over gRPC).

Recording is a tuple append on the request path; building OTLP messages and
sending them happens in batches on a separate task. The OpenTelemetry SDK's
span objects cost about as much as proxying a request, so the hot path does
not create them; what leaves the agent is exactly what the SDK's OTLP exporter
would send (``opentelemetry-proto`` messages to ``TraceService/Export``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

logger = logging.getLogger(__name__)

SPAN_KIND_SERVER = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
SPAN_KIND_CLIENT = trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT
_SCOPE = common_pb2.InstrumentationScope(name="proxyagent")
_ERROR_LOG_INTERVAL_S = 60.0

Attribute = tuple[str, str | int]


@dataclass(slots=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    error: bool
    attributes: tuple[Attribute, ...]


def _value(value: str | int) -> common_pb2.AnyValue:
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    return common_pb2.AnyValue(string_value=value)


def _to_otlp(record: SpanRecord) -> trace_pb2.Span:
    status = trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR) if record.error else trace_pb2.Status()
    return trace_pb2.Span(
        trace_id=bytes.fromhex(record.trace_id),
        span_id=bytes.fromhex(record.span_id),
        parent_span_id=bytes.fromhex(record.parent_span_id) if record.parent_span_id else b"",
        name=record.name,
        kind=record.kind,  # type: ignore[arg-type]
        start_time_unix_nano=record.start_ns,
        end_time_unix_nano=record.end_ns,
        attributes=[common_pb2.KeyValue(key=k, value=_value(v)) for k, v in record.attributes],
        status=status,
    )


class SpanExporter:
    """Bounded queue plus a batching export task. When the queue is full, new spans are dropped and counted:
    telemetry must never slow down or break the traffic it describes."""

    def __init__(
        self,
        target: str,
        resource: dict[str, str],
        *,
        max_queue: int = 8192,
        batch_size: int = 512,
        interval_s: float = 1.0,
    ) -> None:
        self._target = target
        self._resource = resource_pb2.Resource(
            attributes=[common_pb2.KeyValue(key=k, value=_value(v)) for k, v in resource.items()]
        )
        self._queue: deque[SpanRecord] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._last_error_log = 0.0
        self.exported_total = 0
        self.dropped_total = 0
        self.failed_exports_total = 0

    def record(self, span: SpanRecord) -> None:
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
            await self._export(batch)

    async def _export(self, batch: list[SpanRecord]) -> None:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        request = trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource=self._resource,
                    scope_spans=[trace_pb2.ScopeSpans(scope=_SCOPE, spans=[_to_otlp(r) for r in batch])],
                )
            ]
        )
        try:
            stub = trace_service_pb2_grpc.TraceServiceStub(self._channel)  # type: ignore[no-untyped-call]
            await stub.Export(request, timeout=5.0)
        except grpc.aio.AioRpcError as exc:
            self.failed_exports_total += 1
            self.dropped_total += len(batch)
            now = time.monotonic()
            if now - self._last_error_log > _ERROR_LOG_INTERVAL_S:
                self._last_error_log = now
                logger.warning("span export to %s failed: %s (%s)", self._target, exc.code().name, exc.details())
            return
        self.exported_total += len(batch)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5.0)
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
