"""Spans sent over OTLP/gRPC to the real control-plane server are stored, summarised per trace, and bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from asgiref.sync import sync_to_async
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from meshui.meshcontrol.server import MeshControlServer
from meshui.telemetry.ingest import SpanIngest
from meshui.telemetry.models import Span, SpanStatus, TraceSummary
from meshui.telemetry.models import SpanKind as StoredKind
from meshui.telemetry.span_store import SpanRow
from meshui.telemetry.writer import IngestFull
from tests.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def server(transactional_db: None, settings: Any) -> AsyncIterator[MeshControlServer]:
    settings.MESH_OTLP_MAX_MESSAGE_BYTES = 64 * 1024
    running = MeshControlServer("127.0.0.1:0")
    await running.start()
    yield running
    await running.stop(grace=0)


def _provider(port: int, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.namespace": "shop"}))
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_spans_from_the_otel_sdk_are_stored_and_summarised(server: MeshControlServer) -> None:
    assert server.port is not None
    web, catalog = _provider(server.port, "web"), _provider(server.port, "catalog")

    def make_trace() -> str:
        # The SDK's exporter is synchronous; it runs off the loop that serves it.
        outer = web.get_tracer("test").start_as_current_span("GET /", kind=SpanKind.SERVER)
        attributes: dict[str, str | int] = {"mesh.destination.service": "catalog.shop", "n": 3}
        inner = catalog.get_tracer("test").start_as_current_span(
            "GET catalog", kind=SpanKind.CLIENT, attributes=attributes
        )
        with outer as root, inner as child:
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "boom"))
        return f"{root.get_span_context().trace_id:032x}"

    trace_id = await asyncio.to_thread(make_trace)
    await asyncio.to_thread(web.shutdown)
    await asyncio.to_thread(catalog.shutdown)

    spans = await sync_to_async(lambda: list(Span.objects.filter(trace_id=trace_id).order_by("start")))()
    assert [(s.service, s.operation, s.kind) for s in spans] == [
        ("web", "GET /", StoredKind.SERVER),
        ("catalog", "GET catalog", StoredKind.CLIENT),
    ]
    root, child = spans
    assert child.parent_span_id == root.span_id
    assert root.parent_span_id == ""
    assert child.status == SpanStatus.ERROR
    assert child.status_message == "boom"
    assert child.attributes == {"mesh.destination.service": "catalog.shop", "n": 3}
    assert child.destination_service == "catalog.shop"
    assert [(e["name"], e["attributes"]) for e in child.events] == [("retry", {"attempt": 2})]
    assert root.namespace == "shop"
    assert root.resource["service.name"] == "web"
    assert root.duration_us >= child.duration_us

    summary = await sync_to_async(TraceSummary.objects.get)(trace_id=trace_id)
    assert (summary.root_service, summary.root_operation) == ("web", "GET /")
    assert (summary.span_count, summary.error, summary.services) == (2, True, ["catalog", "web"])
    assert summary.start == root.start
    assert summary.duration_us == root.duration_us


def _request(*spans: trace_pb2.Span, service: str = "app") -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service))
                    ]
                ),
                scope_spans=[trace_pb2.ScopeSpans(spans=list(spans))],
            )
        ]
    )


def _span(
    trace: int, span: int, parent: int = 0, start_ms: int = 1_000, end_ms: int = 1_010, name: str = ""
) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name or f"op{span}",
        start_time_unix_nano=1_700_000_000_000_000_000 + start_ms * 1_000_000,
        end_time_unix_nano=1_700_000_000_000_000_000 + end_ms * 1_000_000,
    )


async def _export(port: int, request: trace_service_pb2.ExportTraceServiceRequest) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        return await stub.Export(request, timeout=10)


async def test_a_retried_batch_stores_nothing_twice(server: MeshControlServer) -> None:
    assert server.port is not None
    request = _request(_span(7, 1), _span(7, 2, parent=1, start_ms=1_002, end_ms=1_030))
    for _ in range(2):
        await _export(server.port, request)
    assert await sync_to_async(Span.objects.count)() == 2
    summary = await sync_to_async(TraceSummary.objects.get)(trace_id=f"{7:032x}")
    assert (summary.span_count, summary.duration_us, summary.root_operation) == (2, 30_000, "op1")


async def test_a_trace_split_over_batches_is_summarised_as_a_whole(server: MeshControlServer) -> None:
    assert server.port is not None
    await _export(server.port, _request(_span(9, 2, parent=1, start_ms=1_005, end_ms=1_050), service="catalog"))
    first = await sync_to_async(TraceSummary.objects.get)(trace_id=f"{9:032x}")
    assert (first.root_service, first.span_count) == ("catalog", 1), "without its root, the earliest span leads"
    await _export(server.port, _request(_span(9, 1, start_ms=1_000, end_ms=1_020), service="web"))
    summary = await sync_to_async(TraceSummary.objects.get)(trace_id=f"{9:032x}")
    assert (summary.root_service, summary.span_count, summary.duration_us) == ("web", 2, 50_000)
    assert summary.services == ["catalog", "web"]


async def test_malformed_spans_are_rejected_one_by_one(server: MeshControlServer) -> None:
    assert server.port is not None
    bad_trace = _span(11, 1)
    bad_trace.trace_id = b"\x01" * 8
    backwards = _span(11, 3, start_ms=1_010, end_ms=1_000)
    response = await _export(server.port, _request(_span(11, 2), bad_trace, backwards))
    assert response.partial_success.rejected_spans == 2
    assert "trace_id" in response.partial_success.error_message
    assert server.traces is not None
    assert server.traces.rejected_total == 2
    stored = await sync_to_async(lambda: list(Span.objects.values_list("span_id", flat=True)))()
    assert stored == [f"{2:016x}"]


async def test_values_the_database_cannot_hold_reject_their_span_not_the_batch(server: MeshControlServer) -> None:
    assert server.port is not None
    not_a_number = _span(12, 1)
    not_a_number.attributes.add(key="ratio", value=common_pb2.AnyValue(double_value=float("nan")))
    nul_in_name = _span(12, 2, name="GET /\x00")
    nul_in_value = _span(12, 3)
    nul_in_value.attributes.add(key="user", value=common_pb2.AnyValue(string_value="a\x00b"))
    response = await _export(server.port, _request(not_a_number, nul_in_name, nul_in_value, _span(12, 4)))
    assert response.partial_success.rejected_spans == 3
    stored = await sync_to_async(lambda: list(Span.objects.values_list("span_id", flat=True)))()
    assert stored == [f"{4:016x}"], "the good span of the same batch is stored"
    # A resource the database cannot hold rejects the spans under it.
    bad_resource = _request(_span(13, 1), service="web\x00")
    assert (await _export(server.port, bad_resource)).partial_success.rejected_spans == 1


async def test_an_oversized_request_is_refused_whole(server: MeshControlServer) -> None:
    assert server.port is not None
    big = [_span(13, i, name="x" * 1000) for i in range(1, 200)]  # ~200 kB, over the 64 kB limit
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _export(server.port, _request(*big))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await sync_to_async(Span.objects.count)() == 0
    await _export(server.port, _request(_span(13, 1)))
    assert await sync_to_async(Span.objects.count)() == 1, "the server still takes what fits"


async def test_a_full_ingest_queue_refuses_instead_of_growing() -> None:
    ingest = SpanIngest(max_pending_spans=3, batch_spans=10)  # no writer runs: nothing drains the queue
    waiting = asyncio.ensure_future(ingest.submit([_row(), _row()]))
    await eventually(lambda: _true(ingest.pending == 2), "the first submission is queued")
    with pytest.raises(IngestFull):
        await ingest.submit([_row(), _row()])
    assert (ingest.pending, ingest.refused_total) == (2, 2)
    await ingest.close(None)
    with pytest.raises(Exception, match="stopping"):
        await waiting


def _row() -> SpanRow:
    return SpanRow(
        trace_id="1" * 32, span_id="1" * 16, service="web", namespace="", operation="GET", start_us=1, end_us=2
    )


async def _true(value: bool) -> bool:
    return value
