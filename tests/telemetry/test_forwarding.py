"""Everything the control plane receives over OTLP is re-exported, unchanged, to a configured endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from meshui.meshcontrol.server import MeshControlServer
from meshui.telemetry.forwarding import TRACES, OtlpForwarder

pytestmark = pytest.mark.django_db(transaction=True)


class Collector(trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer):
    """Stands in for Jaeger, Tempo or an OpenTelemetry Collector."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    async def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the OTLP services' method name
        self.received.append(request)
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            return trace_service_pb2.ExportTraceServiceResponse()
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    recorder = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(recorder, server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(recorder, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield recorder, port
    await server.stop(0)


async def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)  # polling interval, bounded by the deadline


async def test_spans_and_metrics_are_forwarded_as_received(
    transactional_db: None, settings: Any, collector: tuple[Collector, int]
) -> None:
    recorder, port = collector
    settings.MESH_OTLP_FORWARD_ENDPOINT = f"127.0.0.1:{port}"
    server = MeshControlServer("127.0.0.1:0")
    own_port = await server.start()
    spans = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        spans=[
                            trace_pb2.Span(
                                trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="GET /",
                                start_time_unix_nano=1_700_000_000_000_000_000,
                                end_time_unix_nano=1_700_000_000_100_000_000,
                            )
                        ]
                    )
                ],
            )
        ]
    )  # fmt: skip
    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{own_port}") as channel:
            await trace_service_pb2_grpc.TraceServiceStub(channel).Export(spans, timeout=10)  # type: ignore[no-untyped-call]
            await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, timeout=10)  # type: ignore[no-untyped-call]
        await _until(lambda: len(recorder.received) == 2, "both requests reach the collector")
        assert recorder.received == [spans, metrics]
        forwarder = server.forwarder
        assert forwarder is not None
        # The collector holds a request before its reply reaches the forwarder, which counts on the reply.
        await _until(lambda: forwarder.forwarded_total == 2, "both forwards are counted once acknowledged")
        assert forwarder.dropped_total == 0
    finally:
        await server.stop(grace=0)


async def test_a_dead_endpoint_drops_after_retries_and_a_full_queue_drops_at_once() -> None:
    forwarder = OtlpForwarder("127.0.0.1:1", max_pending=2)
    for _ in range(3):
        forwarder.offer(TRACES, b"")
    assert forwarder.dropped_total == 1, "the third did not fit"
    task = asyncio.create_task(forwarder.run())
    await _until(lambda: forwarder.dropped_total == 3, "both queued requests are given up on")
    assert forwarder.forwarded_total == 0
    forwarder.stop()
    await asyncio.wait_for(task, 10)
