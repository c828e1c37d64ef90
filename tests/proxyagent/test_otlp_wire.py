"""The hand-written OTLP encoding decodes into the messages opentelemetry-proto defines."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from proxyagent.otlp_wire import (
    AttributeCache,
    encode_export_request,
    encode_resource,
    encode_scope,
    encode_span,
    span_attribute,
    varint,
)
from proxyagent.telemetry import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, HttpSpans, SpanExporter
from proxyagent.tracing import TraceContext


def _value(value: str | int) -> common_pb2.AnyValue:
    return common_pb2.AnyValue(int_value=value) if isinstance(value, int) else common_pb2.AnyValue(string_value=value)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**35, 2**63 - 1, -1, -(2**63)])
def test_varints_match_protobuf(value: int) -> None:
    encoded = common_pb2.AnyValue(int_value=value).SerializeToString()
    assert encoded == b"\x18" + varint(value)


def test_a_span_decodes_to_the_same_message_the_sdk_would_build() -> None:
    attributes: list[tuple[str, str | int]] = [
        ("http.request.method", "GET"),
        ("http.response.status_code", 503),
        ("url.path", "/ünï"),
    ]
    encoded = encode_span(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        parent_span_id=bytes.fromhex("00f067aa0ba902b7"),
        name=b"GET reviews.shop",
        kind=SPAN_KIND_CLIENT,
        start_ns=1_700_000_000_123_456_789,
        end_ns=1_700_000_000_223_456_789,
        attributes=b"".join(span_attribute(k, v) for k, v in attributes),
        error=True,
    )
    expected = trace_pb2.Span(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        parent_span_id=bytes.fromhex("00f067aa0ba902b7"),
        name="GET reviews.shop",
        kind=trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_123_456_789,
        end_time_unix_nano=1_700_000_000_223_456_789,
        attributes=[common_pb2.KeyValue(key=k, value=_value(v)) for k, v in attributes],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR),
    )
    assert trace_pb2.Span.FromString(encoded) == expected
    assert encoded == expected.SerializeToString()


def test_a_root_span_has_no_parent_and_an_unset_status() -> None:
    span = trace_pb2.Span.FromString(
        encode_span(
            trace_id=b"\x01" * 16,
            span_id=b"\x02" * 8,
            parent_span_id=b"",
            name=b"GET a",
            kind=SPAN_KIND_SERVER,
            start_ns=1,
            end_ns=2,
            attributes=b"",
            error=False,
        )
    )
    assert span.parent_span_id == b""
    assert span.kind == trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
    assert not span.HasField("status")


def test_an_export_request_carries_resource_scope_and_every_span() -> None:
    spans = [
        encode_span(
            trace_id=bytes([i]) * 16,
            span_id=bytes([i]) * 8,
            parent_span_id=b"",
            name=b"span %d" % i,
            kind=SPAN_KIND_SERVER,
            start_ns=i,
            end_ns=i + 1,
            attributes=b"",
            error=False,
        )
        for i in range(1, 4)
    ]
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(
        encode_export_request(encode_resource({"service.name": "web"}), encode_scope("proxyagent"), spans)
    )
    (resource_spans,) = request.resource_spans
    assert [(kv.key, kv.value.string_value) for kv in resource_spans.resource.attributes] == [("service.name", "web")]
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "proxyagent"
    assert [span.name for span in scope_spans.spans] == ["span 1", "span 2", "span 3"]


def test_the_attribute_cache_is_bounded_and_still_encodes_past_its_bound() -> None:
    cache = AttributeCache(max_entries=2)
    blocks = [cache.block(i, (("n", i),)) for i in range(5)]
    assert blocks == [span_attribute("n", i) for i in range(5)]
    assert len(cache._blocks) == 2


def test_attributes_other_than_strings_and_integers_are_refused() -> None:
    with pytest.raises(TypeError):
        span_attribute("flag", True)  # bool is an int to the type checker, not to OTLP


def test_http_spans_carry_the_semantic_convention_attributes_and_the_mesh_edge() -> None:
    exporter = SpanExporter("127.0.0.1:1", {"service.name": "web"})
    spans = HttpSpans(exporter, SPAN_KIND_CLIENT)
    trace = TraceContext(b"0af7651916cd43dd8448eb211c80319c", None, b"b7ad6b7169203331", True)
    for status, mesh_error in ((200, None), (504, "timeout")):
        spans.record(
            trace.trace_id,
            trace.parent_span_id,
            trace.span_id,
            method=b"POST",
            target=b"/orders/7?x=1",
            version="1.1",
            status=status,
            edge=("outbound", "web-v1", "orders.shop", "orders-v2", "true"),
            mesh_error=mesh_error,
            start_ns=10,
            end_ns=20,
        )
    ok, failed = (trace_pb2.Span.FromString(raw) for raw in exporter._queue)
    attributes = {kv.key: kv.value.string_value or kv.value.int_value for kv in ok.attributes}
    assert attributes == {
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
        "server.address": "orders.shop",
        "mesh.source.workload": "web-v1",
        "mesh.destination.service": "orders.shop",
        "mesh.destination.workload": "orders-v2",
        "url.path": "/orders/7",
    }
    assert ok.name == "POST orders.shop"
    assert not ok.HasField("status")
    failed_attributes = {kv.key: kv.value.string_value for kv in failed.attributes}
    assert (failed_attributes["mesh.error"], failed_attributes["error.type"]) == ("timeout", "timeout")
    assert failed.status.code == trace_pb2.Status.STATUS_CODE_ERROR
