"""Spans from both sidecars reach an OTLP/gRPC receiver as one trace."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from proxyagent.tracing import continue_or_start
from tests.proxyagent.mesh_harness import LoopThread, Mesh, destination, mesh
from tests.proxyagent.sample_app import running_app

# Every test here runs on both data paths: the native relay and the Python one.
pytestmark = pytest.mark.usefixtures("data_path")


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], trace_pb2.Span]] = []

    async def Export(  # noqa: N802 - the OTLP service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((resource, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def _attributes(span: trace_pb2.Span) -> dict[str, Any]:
    return {kv.key: kv.value.string_value or kv.value.int_value for kv in span.attributes}


@pytest.fixture
def traced() -> Iterator[tuple[Mesh, Receiver, int, int]]:
    receiver = Receiver()
    with running_app("reviews-app") as app, mesh() as built:
        loop: LoopThread = built.loop

        async def serve() -> tuple[grpc.aio.Server, int]:
            server = grpc.aio.server()
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            return server, port

        server, port = loop.run(serve())
        reviews = built.agent("reviews", app.port, otlp_endpoint=f"127.0.0.1:{port}")
        web = built.agent("web", 1, otlp_endpoint=f"127.0.0.1:{port}")
        built.configure(web, 1, destination("reviews", reviews.ports["inbound"]))
        yield built, receiver, web.ports["outbound"], port
        loop.run(server.stop(0))


def test_both_hops_export_spans_of_one_trace(traced: tuple[Mesh, Receiver, int, int]) -> None:
    _, receiver, outbound, _ = traced
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    conn = http.client.HTTPConnection("127.0.0.1", outbound, timeout=10)
    conn.request("GET", "/echo?q=1", headers={"Host": "reviews", "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    assert conn.getresponse().read()
    conn.close()
    deadline = time.monotonic() + 10
    while len(receiver.spans) < 2:
        assert time.monotonic() < deadline, receiver.spans
        time.sleep(0.05)  # polling interval while the exporters' batches arrive
    by_kind = {span.kind: (resource, span) for resource, span in receiver.spans}
    client_resource, client = by_kind[trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT]
    server_resource, server = by_kind[trace_pb2.Span.SpanKind.SPAN_KIND_SERVER]
    assert client.trace_id.hex() == server.trace_id.hex() == trace_id
    assert client.parent_span_id.hex() == "b7ad6b7169203331"
    assert server.parent_span_id == client.span_id, "the server span is the client span's child"
    assert client_resource["service.name"] == "web"
    assert server_resource["service.name"] == "reviews"
    attributes = _attributes(client)
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/echo"
    assert attributes["http.response.status_code"] == 200
    assert attributes["mesh.source.workload"] == "web-v1"
    assert attributes["mesh.destination.service"] == "reviews.shop"
    assert _attributes(server)["mesh.destination.workload"] == "reviews-v1"
    assert client.end_time_unix_nano >= server.end_time_unix_nano >= server.start_time_unix_nano


def test_mesh_errors_are_error_spans(traced: tuple[Mesh, Receiver, int, int]) -> None:
    _, receiver, outbound, _ = traced
    conn = http.client.HTTPConnection("127.0.0.1", outbound, timeout=10)
    conn.request("GET", "/", headers={"Host": "nowhere"})
    assert conn.getresponse().status == 404
    conn.close()
    deadline = time.monotonic() + 10
    while not receiver.spans:
        assert time.monotonic() < deadline
        time.sleep(0.05)  # polling interval while the exporter's batch arrives
    _, span = receiver.spans[0]
    assert _attributes(span)["mesh.error"] == "no_route"


def test_unsampled_callers_are_not_recorded() -> None:
    context = continue_or_start(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", sample=True)
    assert context.sampled is False
    assert context.header().endswith(b"-00")
    fresh = continue_or_start(b"garbage", sample=False)
    assert fresh.parent_span_id is None
    assert fresh.sampled is False
