"""OpenTelemetry's ``TraceService/Export`` and ``MetricsService/Export`` (OTLP/gRPC), so any OTel SDK, not
only our agents, can send spans and the mesh's metrics."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from meshui.telemetry import forwarding, otlp_metrics, otlp_spans
from meshui.telemetry.forwarding import OtlpForwarder
from meshui.telemetry.ingest import SpanIngest
from meshui.telemetry.metrics_writer import MetricsWriter
from meshui.telemetry.writer import IngestFull, StoreFailed

logger = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: SpanIngest, forwarder: OtlpForwarder | None = None) -> None:
        self._ingest = ingest
        self._forwarder = forwarder
        self.rejected_total = 0

    async def Export(  # noqa: N802 - the OTLP service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Context
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        if self._forwarder is not None:
            self._forwarder.offer(forwarding.TRACES, request.SerializeToString())
        decoded = otlp_spans.decode(request)
        if decoded.spans:
            try:
                await self._ingest.submit(decoded.spans)
            except IngestFull as exc:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"span ingest is behind ({exc}); retry later")
            except StoreFailed as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"spans could not be stored ({exc}); retry later")
        response = trace_service_pb2.ExportTraceServiceResponse()
        if decoded.rejected:
            self.rejected_total += decoded.rejected
            logger.warning("rejected %d spans: %s", decoded.rejected, decoded.reason)
            response.partial_success.rejected_spans = decoded.rejected
            response.partial_success.error_message = decoded.reason
        return response


class MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """Adds the mesh's delta metrics to per-edge buckets, through the writer that batches every agent's."""

    def __init__(self, writer: MetricsWriter, forwarder: OtlpForwarder | None = None) -> None:
        self._writer = writer
        self._forwarder = forwarder
        self.rejected_total = 0

    async def Export(  # noqa: N802 - the OTLP service's method name
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Context
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        if self._forwarder is not None:
            self._forwarder.offer(forwarding.METRICS, request.SerializeToString())
        decoded = otlp_metrics.decode(request)
        try:
            await self._writer.submit(decoded.increments)
        except IngestFull as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"metric ingest is behind ({exc}); retry later")
        except StoreFailed as exc:  # the database is down, say: the client keeps its data and retries
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"metrics could not be stored ({exc}); retry later")
        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if decoded.rejected:
            self.rejected_total += decoded.rejected
            logger.warning("rejected %d metric data points: %s", decoded.rejected, decoded.reason)
            response.partial_success.rejected_data_points = decoded.rejected
            response.partial_success.error_message = decoded.reason
        return response
